"""Plan vs actual of runs trained here: the launch plan's train() wall time against what 03_train
measured, and the run's own projection at 5% of its steps against its final training loop.

Issue 24's proof on one machine: two demos in a row, the second planned from the first's measured
row (the local profile's 03_train calibrates itself: `calibrate: true`).

    make demo && make demo                               # two runs, runs/<first> and runs/<second>
    python bench/plan_vs_actual.py runs/<first> runs/<second>    # a markdown table, for both runs
                                                                 # (docs/benchmarks.md keeps it)

The rows are the budget report's (lib/budget/report.py `timing_rows`: the same numbers as
runs/<id>/report/budget.md's "Plan vs actual"); the plan is <run>/plan/local.json (made by the
03_train notebook before training), the actual <run>/train/metrics.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lib.budget.plans import load_plans  # noqa: E402
from lib.budget.report import timing_rows  # noqa: E402


def run_rows(run: Path) -> tuple[dict, dict, list[str]]:
    plans, metrics = load_plans(run), run / "train" / "metrics.json"
    if not plans or not metrics.is_file():
        raise SystemExit(f"{run}: needs plan/*.json and train/metrics.json (a run whose 03_train finished)")
    plan, m = plans[-1], json.loads(metrics.read_text())
    return plan, m, timing_rows(plan, m)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories, oldest first (the last is the calibrated one)")
    args = ap.parse_args(argv)
    print("| run | what | plan | actual | actual / plan |\n|---|---|---:|---:|---:|")
    for run in map(Path, args.runs):
        plan, m, rows = run_rows(run)
        for row in rows:
            print(f"| {run.name} {row}")
        print(f"|  | speed from | {plan.get('throughput_source', '')[:90]} | | |")


if __name__ == "__main__":
    main()
