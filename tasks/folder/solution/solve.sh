#!/usr/bin/env bash
# Reference solution: build the variant's tree (AGENTEVAL_VARIANT) in the cwd, /workspace.
set -euo pipefail
exec python3 -B "$AGENTEVAL_SOLUTION/make_tree.py"
