"""Where things live: the repository, the model cache, run directories."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "lib"
NOTEBOOKS = REPO / "notebooks"
BUDGETS_YAML = REPO / "budgets.yaml"


def repo_path(p: str | os.PathLike) -> Path:
    """A notebook's path parameter, resolved the one way every notebook resolves them:
    absolute paths pass through, relative ones are under the repository root.

    Never against the working directory: `make lab` starts Jupyter in notebooks/, the
    runner runs papermill from the root, so "budgets.yaml" must mean the same file in both."""
    p = Path(os.path.expanduser(os.fspath(p)))
    if not str(p) or str(p) == ".":
        raise ValueError("repo_path needs a path, got an empty one")  # "" means "the default" to callers
    return p if p.is_absolute() else REPO / p


def repo_location(p: str) -> str:
    """`repo_path` for parameters that may also be an http(s) URL (seed files, question sets)."""
    return p if "://" in p else str(repo_path(p))


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
