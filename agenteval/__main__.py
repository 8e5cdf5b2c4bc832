"""``python -m agenteval``: the ``agenteval`` command."""

from agenteval.cli import main

if __name__ == "__main__":
    main()
