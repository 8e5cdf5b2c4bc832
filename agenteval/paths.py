"""Where agenteval writes when not told otherwise: ``reports/`` under the current directory (the
DuckDB file, each run's site and artifacts, built test models), and one cache folder for what
outlives a checkout (downloaded models, llama.cpp builds, ladder rungs).
"""

from __future__ import annotations

import os
from pathlib import Path

REPORTS_DIR = Path("reports")
DEFAULT_DB = REPORTS_DIR / "agenteval.duckdb"
TEST_MODELS_DIR = REPORTS_DIR / "models"


def run_dir(out: str | Path | None, run_id: str) -> Path:
    """A run's own folder (its site and artifacts) under ``out`` (default ``reports/``)."""
    return Path(out or REPORTS_DIR) / run_id


def cache_dir() -> Path:
    """``$AGENTEVAL_CACHE``, else ``$XDG_CACHE_HOME/agenteval``, else ``~/.cache/agenteval``."""
    explicit = os.environ.get("AGENTEVAL_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agenteval"
