"""``python -m agenteval.report.worker JOB``: a helper process of ``site`` that
renders a share of a site's trial pages (see ``site._render_trials``)."""

from __future__ import annotations

import sys
from pathlib import Path

from agenteval.report.site import render_share

if __name__ == "__main__":
    render_share(Path(sys.argv[1]))
