"""What a run leaves on the screen and in report/: the budget report after every run (a failed
one too), and a few lines of what it made (records kept, held-out loss, evaluation)."""
from __future__ import annotations

import sys
from pathlib import Path

from lib.budget import load_budgets, write_report
from lib.core.files import read_json


def final_report(run_dir: Path, budgets_path: Path) -> None:
    """A budget report follows every run, also a failed one."""
    try:
        write_report(run_dir, load_budgets(budgets_path))
    except Exception as e:  # the report must never hide the run's own outcome
        print(f"warning: budget report not written ({e})", file=sys.stderr)


def summary(run_dir: Path, seconds: float) -> str:
    lines = [f"\nrun {run_dir.name} finished in {seconds / 60:.1f} min -> {run_dir}"]
    counts = {name: _count_lines(run_dir / "data" / name) for name in ("generated.jsonl", "clean.jsonl")}
    lines.append(f"  data: {counts['generated.jsonl']} generated, {counts['clean.jsonl']} kept after cleaning")
    metrics = read_json(run_dir / "train" / "metrics.json")
    if metrics:
        lines.append(f"  held-out loss: base {metrics.get('base_heldout_loss', float('nan')):.3f} -> "
                     f"fine-tuned {metrics.get('tuned_heldout_loss', float('nan')):.3f}")
    results = read_json(run_dir / "eval" / "results.json")
    if results and "headline" in results:
        lines.append(f"  evaluation: {results['headline']}")
    report = run_dir / "report" / "budget.md"
    if report.exists():
        lines.append(f"  budget report: {report}")
    return "\n".join(lines)


def _count_lines(p: Path) -> int:
    if not p.exists():
        return 0
    with open(p, "rb") as f:
        return sum(1 for line in f if line.strip())
