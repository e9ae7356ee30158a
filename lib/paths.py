"""Where things live: the repository, the model cache, run directories."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
BUDGETS_YAML = REPO / "budgets.yaml"


def cache_dir() -> Path:
    """Converted models and other derived files; `SHEAR_CACHE` overrides `<repo>/.cache`."""
    return Path(os.environ.get("SHEAR_CACHE") or REPO / ".cache")


def runs_dir() -> Path:
    return Path(os.environ.get("SHEAR_RUNS") or REPO / "runs")


_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def valid_run_id(run_id: str) -> bool:
    return bool(_RUN_ID.match(run_id))
