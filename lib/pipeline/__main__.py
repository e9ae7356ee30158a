"""The runner's command line: `python -m lib.pipeline run --profile local` (lib/pipeline/runner.py).

    python -m lib.pipeline run --profile local [--run-id ID | --resume ID | --run-dir DIR] [--phases NB,NB]
                               [--set NB.PARAM=VALUE ...] [--budgets budgets.yaml] [--redo]
    python -m lib.pipeline profiles          # the profiles in lib/profiles/, one line each
"""
from __future__ import annotations

import argparse
import signal
import sys

from lib.core.errors import cli
from lib.core.profiles import PROFILES, load_profile
from lib.pipeline import runner


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lib.pipeline", description=runner.__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the notebooks of a profile into runs/<id>/")
    r.add_argument("--profile", default="local", help="profile name in lib/profiles/ or a path (default: local)")
    r.add_argument("--run-id", help="name of the run directory (default: <profile>-<timestamp>)")
    r.add_argument("--resume", metavar="RUN_ID", help="continue a run: finished phases are skipped")
    r.add_argument("--set", action="append", default=[], metavar="NB.PARAM=VALUE", help="override a notebook parameter")
    r.add_argument("--budgets", help="budgets file (default: budgets.yaml)")
    r.add_argument("--run-dir", help="run into this directory (e.g. on a bucket mount); resumes what is there")
    r.add_argument("--phases", metavar="NB[,NB]", help="run only these notebooks of the profile, e.g. 03_train")
    r.add_argument("--redo", action="store_true", help="re-run the selected phases even if they finished")
    sub.add_parser("profiles", help="list profiles")
    args = ap.parse_args(argv)
    # SIGTERM (a spot kill, `kill`, a CI timeout) unwinds like Ctrl-C: the local server is
    # stopped, the phase is marked, and the budget report is still written.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.cmd == "profiles":
        for p in sorted(PROFILES.glob("*.yaml")):
            prof = load_profile(str(p))
            print(f"{p.stem:15s} {prof['target']:6s} {prof.get('description', '').strip()}")
        return
    runner.run(args.profile, run_id=args.run_id, resume=args.resume, sets=args.set, budgets_path=args.budgets,
               phases=args.phases, run_dir=args.run_dir, redo=args.redo)


if __name__ == "__main__":
    main()
