"""Measured speed rows from this project's own runs: `python -m lib.launch --calibrate runs/<id>`.

Every finished 03_train writes its real tokens/s per GPU, MFU, accelerator and method into
train/metrics.json (lib/train/sft.py `measured_speed`). Calibrating a run appends them, with the
run's id and date, to lib/data/measured_throughput.jsonl (append-only: earlier rows stay); the
launch plan then prices that recipe on that accelerator from the newest measured row instead of
the cited prior (lib/budget/throughput.py `speed`), and says so.
"""
from __future__ import annotations

import os
from pathlib import Path

from lib.budget.throughput import MEASURED_JSONL
from lib.core.errors import UserError
from lib.core.files import AppendLog, read_json


def measured_row(run_dir: str | os.PathLike) -> dict:
    """The measured row of one finished 03_train, checked before anything is written."""
    run = Path(run_dir)
    metrics = run / "train" / "metrics.json"
    if not metrics.is_file():
        raise UserError(f"--calibrate {run_dir}: no train/metrics.json: pass the directory of a run whose 03_train finished")
    m = read_json(metrics)
    tps = m.get("tokens_per_s_per_gpu")
    if not isinstance(tps, (int, float)) or isinstance(tps, bool) or tps <= 0:
        raise UserError(f"--calibrate {run_dir}: train/metrics.json has no measured tokens_per_s_per_gpu: "
                        "calibrate from a run trained by this version of 03_train")
    for key in ("recipe", "accelerator", "method"):
        if not m.get(key):
            raise UserError(f"--calibrate {run_dir}: train/metrics.json has no {key}: calibrate from a run trained "
                            "by this version of 03_train")
    return {"recipe": m["recipe"], "accelerator": m["accelerator"], "method": m["method"],
            "tokens_per_s_per_gpu": float(tps), "mfu": m.get("mfu"), "run": run.resolve().name,
            "date": m.get("measured_at"), "model": m.get("model_id"), "world_size": m.get("world_size"),
            "packing": m.get("packing"), "max_length": m.get("max_length")}


def calibrate(run_dirs: list[str], path: str | os.PathLike = MEASURED_JSONL) -> list[dict]:
    """Append the measured rows of `run_dirs` (all checked first: one bad run writes nothing)."""
    rows = [measured_row(r) for r in run_dirs]
    AppendLog(path).append_many(rows)
    return rows
