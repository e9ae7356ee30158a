"""Budget command line.

    python -m lib.budget report runs/<id> [--budgets budgets.yaml]   # report/budget.md + .png
    python -m lib.budget check [budgets.yaml] [--run runs/<id>]      # validate a budgets file
    python -m lib.budget spent runs/<id>                              # spend per phase, one line each
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lib.budget import Ledger, load_budgets, write_report
from lib.core.errors import UserError, cli
from lib.core.paths import BUDGETS_YAML


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lib.budget", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rep = sub.add_parser("report", help="write report/budget.md and report/budget.png for a run")
    rep.add_argument("run_dir")
    rep.add_argument("--budgets", default=str(BUDGETS_YAML))
    chk = sub.add_parser("check", help="validate budgets.yaml (and its caps against a run's ledger)")
    chk.add_argument("budgets", nargs="?", default=str(BUDGETS_YAML))
    chk.add_argument("--run", default=None, help="a run directory whose spend the caps must cover")
    sp = sub.add_parser("spent", help="print spend per phase of a run")
    sp.add_argument("run_dir")
    args = ap.parse_args(argv)

    if args.cmd == "report":
        md, png = write_report(args.run_dir, args.budgets)
        print(f"wrote {md}\nwrote {png}")
    elif args.cmd == "check":
        budgets = load_budgets(args.budgets)
        if args.run:
            Ledger(Path(args.run) / "ledger", writer="check", budgets=budgets)
        print(f"{args.budgets}: ok")
    elif args.cmd == "spent":
        if not (Path(args.run_dir) / "ledger").is_dir():
            raise UserError(f"{args.run_dir} has no ledger/: check the run directory (ls runs/)")
        ledger = Ledger(Path(args.run_dir) / "ledger", writer="report")
        for phase, usd in ledger.spent_by_phase().items():
            print(f"{phase:<11} ${usd:,.6f}")
        print(f"{'total':<11} ${sum(ledger.spent_by_phase().values()):,.6f}")


if __name__ == "__main__":
    main()
