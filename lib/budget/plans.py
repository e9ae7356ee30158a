"""Where a run's launch plans live, and how the budget report reads them back.

`python -m lib.launch ... --run-dir RUN` writes one plan per task (lib/launch/plan.py); the
budget report sets the newest beside what training measured. The file layout is the contract
between the two layers, so it has one home here, below both.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def plan_path(run_dir: str | os.PathLike, task: str) -> Path:
    return Path(run_dir) / "plan" / f"{task}.json"


def load_plans(run_dir: str | os.PathLike) -> list[dict]:
    """Saved plans of a run, oldest first (a plan that cannot be read is skipped: it is advice)."""
    out = []
    for p in sorted((Path(run_dir) / "plan").glob("*.json")):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(out, key=lambda d: d.get("created") or 0)
