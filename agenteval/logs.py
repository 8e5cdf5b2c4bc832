"""Where library code sends the lines a user watches (progress, warnings): a ``Log``.

The CLI passes its console's printer, a test a list's ``append``, a library caller
``print`` (every default). One type, so every module says the same thing the same way.
"""

from __future__ import annotations

from typing import Callable, TypeAlias

Log: TypeAlias = Callable[[str], None]
