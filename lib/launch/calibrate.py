"""Measured speed rows from this project's own runs: `python -m lib.launch --calibrate runs/<id>`.

Every finished 03_train writes its real tokens/s per GPU, MFU, accelerator and method into
train/metrics.json (lib/train/sft.py `measured_speed`), and the rates of its own model load and
checkpoint saves (bytes / seconds). Calibrating a run appends them, with the run's id and date, to
lib/data/measured_throughput.jsonl (append-only: earlier rows stay); a CPU run describes this
machine, not the project, so its row goes to this machine's file instead (.cache/, not in git;
lib/budget/throughput.py `local_measured_path`). The launch plan then prices that recipe on that
accelerator from the newest measured row instead of the cited prior (lib/budget/throughput.py
`speed`), and its model-load and checkpoint lines from the measured rates
(lib/launch/overheads.py), and says so.
"""
from __future__ import annotations

import os
from pathlib import Path

from lib.budget.throughput import MEASURED_JSONL, local_measured_path
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
            "packing": m.get("packing"), "max_length": m.get("max_length"),
            "model_load_bytes_per_s": (m.get("model_load") or {}).get("bytes_per_s"),
            "checkpoint_write_bytes_per_s": (m.get("checkpoint_write") or {}).get("bytes_per_s")}


def calibrate(run_dirs: list[str], path: str | os.PathLike | None = None) -> list[tuple[dict, Path]]:
    """Append the measured rows of `run_dirs` (all checked first: one bad run writes nothing), each to
    `path`, else lib/data/measured_throughput.jsonl, or this machine's file for a CPU run; (row, file) pairs."""
    rows = [measured_row(r) for r in run_dirs]
    out = []
    for row in rows:
        dest = Path(path) if path else (local_measured_path() if row["accelerator"] == "cpu" else MEASURED_JSONL)
        AppendLog(dest).append(row)
        out.append((row, dest))
    return out


def calibrated_line(row: dict, dest: Path) -> str:
    """What `--calibrate` prints for one appended row."""
    def rate(key):
        return "n/a" if not row.get(key) else f"{row[key] / 1e6:,.0f} MB/s"
    return (f"measured:  {row['recipe']} on {row['accelerator']} ({row['method']}): {row['tokens_per_s_per_gpu']:,.1f} "
            f"tokens/s/GPU, MFU {row['mfu']}, model load {rate('model_load_bytes_per_s')}, checkpoint writes "
            f"{rate('checkpoint_write_bytes_per_s')} [run {row['run']}, {row['date']}] -> {dest}")
