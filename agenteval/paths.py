"""Where agenteval writes when not told otherwise: one folder, ``reports/``, under the current directory.

The DuckDB file, each run's site and artifacts, and built test models live there.
"""

from __future__ import annotations

from pathlib import Path

REPORTS_DIR = Path("reports")
DEFAULT_DB = REPORTS_DIR / "agenteval.duckdb"
TEST_MODELS_DIR = REPORTS_DIR / "models"


def run_dir(out: str | Path | None, run_id: str) -> Path:
    """A run's own folder (its site and artifacts) under ``out`` (default ``reports/``)."""
    return Path(out or REPORTS_DIR) / run_id
