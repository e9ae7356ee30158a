"""Run the whole loop: generate -> clean -> train -> evaluate -> budget report.

    python -m lib.pipeline run --profile local            # the laptop loop, embedded model, $0
    python -m lib.pipeline run --profile local --resume run-20261121-120000
    python -m lib.pipeline run --profile openai --set 01_generate.num_instructions=52000

Each phase is a notebook executed by papermill into runs/<id>/ with the parameters of a
profile (lib/profiles/<name>.yaml) plus `--set` overrides. Profiles are data: which
notebooks run, and with what. Parameters a notebook does not declare are refused (a typo
in a profile must not silently fall back to a default). When the profile's teacher is the
embedded model, one local server is started for the whole run and shared by every phase.

Nothing is written before the inputs check out (profile, budgets.yaml, teacher endpoint and
key). A failed phase leaves the executed notebook up to the failing cell; `--resume <id>`
re-runs from that phase, keeping everything already paid for.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import yaml

from lib.errors import UserError, cli
from lib.files import atomic_write
from lib.paths import BUDGETS_YAML, NOTEBOOKS, REPO, new_run_id, runs_dir, valid_run_id

PROFILES = Path(__file__).resolve().parent / "profiles"
STATE = "pipeline.json"
# Parameters the runner fills in for any notebook that declares them.
SHARED_ENDPOINT_PARAMS = (("teacher_base_url", "teacher_model"), ("judge_base_url", "judge_model"))


# ----------------------------------------------------------------------------- profiles
def load_profile(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES / f"{name_or_path}.yaml"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in PROFILES.glob("*.yaml")))
        raise UserError(f"no profile {name_or_path!r}: use one of {names} or a path to a profile YAML")
    try:
        prof = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML ({str(e).splitlines()[0]}): fix the file") from None
    unknown = set(prof) - {"description", "teacher", "params", "notebooks"}
    if unknown:
        raise UserError(f"{path}: unknown key(s) {sorted(unknown)}: use description, teacher, params, notebooks")
    if not isinstance(prof.get("notebooks"), dict) or not prof["notebooks"]:
        raise UserError(f"{path}: `notebooks` must map notebook names to parameter dicts")
    prof["path"] = str(path)
    return prof


def parse_sets(sets: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        nb, dot, param = key.partition(".")
        if not sep or not dot or not nb or not param:
            raise UserError(f"--set {item!r} is malformed: write --set NOTEBOOK.PARAM=VALUE, e.g. --set 03_train.max_steps=10")
        out.setdefault(nb, {})[param] = yaml.safe_load(value)
    return out


def declared_params(nb_path: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged `parameters` (parsed with ast, not regex)."""
    import ast

    nb = json.loads(Path(nb_path).read_text())
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            names = set()
            for node in ast.parse(src).body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
            return names
    raise UserError(f"{nb_path} has no cell tagged `parameters`: tag the first code cell so papermill can set it")


def notebook_params(profile: dict, sets: dict[str, dict]) -> list[tuple[str, Path, dict]]:
    """[(name, path, params)] in run order, checked against each notebook's declared parameters."""
    unknown_nb = set(sets) - set(profile["notebooks"])
    if unknown_nb:
        raise UserError(f"--set names notebook(s) {sorted(unknown_nb)} that profile does not run: use {sorted(profile['notebooks'])}")
    plan = []
    for name, params in profile["notebooks"].items():
        path = NOTEBOOKS / f"{name}.ipynb"
        if not path.exists():
            raise UserError(f"profile {profile['path']} runs {name} but {path} does not exist: fix the profile")
        declared = declared_params(path)
        merged = {k: v for k, v in (profile.get("params") or {}).items() if k in declared}
        merged.update(params or {})
        merged.update(sets.get(name, {}))
        bad = sorted(set(merged) - set(declared))
        if bad:
            raise UserError(f"{name} has no parameter(s) {bad}: it declares {sorted(declared)}")
        for key in merged:
            if "key" in key.lower() and not key.endswith("_env"):
                raise UserError(f"{name}.{key} looks like a secret: pass keys through the environment (api_key_env names the variable)")
        plan.append((name, path, merged))
    return plan


# ----------------------------------------------------------------------------- state
def read_state(run_dir: Path) -> dict:
    p = run_dir / STATE
    return json.loads(p.read_text()) if p.exists() else {"phases": {}}


def write_state(run_dir: Path, state: dict) -> None:
    atomic_write(run_dir / STATE, json.dumps(state, indent=2))


# ----------------------------------------------------------------------------- checks
def preflight(profile: dict, budgets_path: Path) -> None:
    """Everything that can be checked before a single file is written."""
    from lib.budget import check_priced, load_budgets
    from lib.client import Endpoint, check_endpoint

    budgets = load_budgets(budgets_path)
    teacher = profile.get("teacher") or "embedded"
    if teacher != "embedded":
        if not isinstance(teacher, dict) or "base_url" not in teacher or "model" not in teacher:
            raise UserError(f"{profile['path']}: teacher must be `embedded` or {{base_url, model, api_key_env}}")
        ep = Endpoint(base_url=teacher["base_url"], model=teacher["model"],
                      api_key_env=teacher.get("api_key_env", "OPENAI_API_KEY"))
        if not ep.is_local:
            check_priced(ep.model, prices=budgets.prices)
        ep.api_key()
        check_endpoint(ep)
    else:
        from lib.model import gguf_path

        gguf_path()


@contextlib.contextmanager
def shared_teacher(profile: dict, run_dir: Path):
    """Start one embedded server for the run; yield the params every notebook gets."""
    teacher = profile.get("teacher") or "embedded"
    if teacher != "embedded":
        params = {}
        for base, model in SHARED_ENDPOINT_PARAMS:
            params[base], params[model] = teacher["base_url"], teacher["model"]
        params["api_key_env"] = teacher.get("api_key_env", "OPENAI_API_KEY")
        yield params
        return
    from lib.model import embedded_model_dir
    from lib.server import LocalServer

    with LocalServer(embedded_model_dir(), log_path=run_dir / "logs" / "teacher-server.log") as srv:
        params = {}
        for base, model in SHARED_ENDPOINT_PARAMS:
            params[base], params[model] = srv.base_url, srv.model
        yield params


# ----------------------------------------------------------------------------- run
def execute(name: str, src: Path, out: Path, params: dict, *, log_dir: Path) -> None:
    import logging

    import papermill
    from papermill.exceptions import PapermillExecutionError

    # papermill and the kernel talk on the `papermill` logger; the per-phase logs hold the rest
    logging.getLogger("papermill").setLevel(logging.ERROR)

    tmp = out.with_name(f".partial.{out.name}")
    try:
        papermill.execute_notebook(
            str(src), str(tmp), parameters=params, cwd=str(REPO), kernel_name="python3",
            progress_bar=sys.stderr.isatty(), stdout_file=open(log_dir / f"{name}.stdout.log", "w"),
            stderr_file=open(log_dir / f"{name}.stderr.log", "w"),
        )
    except PapermillExecutionError as e:
        os.replace(tmp, out)  # keep what ran: the failing cell shows its error
        last = (e.evalue or e.ename).strip().splitlines()
        raise PhaseFailed(f"{name} failed in cell {e.exec_count}: {e.ename}: {last[-1] if last else ''}") from None
    os.replace(tmp, out)


class PhaseFailed(Exception):
    pass


def run(profile_name: str, *, run_id: str | None = None, resume: str | None = None, sets: list[str] = (),
        budgets_path: str | None = None) -> Path:
    profile = load_profile(profile_name)
    budgets = Path(budgets_path) if budgets_path else BUDGETS_YAML
    plan = notebook_params(profile, parse_sets(list(sets)))
    if resume:
        run_dir = runs_dir() / resume
        if not (run_dir / STATE).exists():
            raise UserError(f"nothing to resume at {run_dir}: check the run id (ls {runs_dir()})")
    else:
        run_id = run_id or new_run_id(Path(profile["path"]).stem)
        if not valid_run_id(run_id):
            raise UserError(f"run id {run_id!r} is not a plain name: use letters, digits, '.', '_' or '-'")
        run_dir = runs_dir() / run_id
        if run_dir.exists():
            raise UserError(f"{run_dir} already exists: pick another --run-id or pass --resume {run_id}")
    preflight(profile, budgets)

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "logs").mkdir(exist_ok=True)
    state = read_state(run_dir)
    state.update(profile=profile["path"], budgets=str(budgets), started=state.get("started") or time.time())
    write_state(run_dir, state)
    print(f"run {run_dir.name}: {profile.get('description', '').strip()}", flush=True)
    t_run = time.time()
    failed = None
    try:
        with shared_teacher(profile, run_dir) as shared:
            for i, (name, src, params) in enumerate(plan, 1):
                declared = declared_params(src)
                full = {k: v for k, v in shared.items() if k in declared and not params.get(k)}
                full.update(params)
                full.update({k: v for k, v in (("run_dir", str(run_dir)), ("budgets_path", str(budgets)))
                             if k in declared})
                if state["phases"].get(name, {}).get("status") == "done":
                    print(f"[{i}/{len(plan)}] {name}: done earlier, skipped", flush=True)
                    continue
                print(f"[{i}/{len(plan)}] {name} ...", end="", flush=True)
                t0 = time.time()
                state["phases"][name] = {"status": "running", "started": t0}
                write_state(run_dir, state)
                try:
                    execute(name, src, run_dir / src.name, full, log_dir=run_dir / "logs")
                except PhaseFailed as e:
                    state["phases"][name].update(status="failed", error=str(e), seconds=time.time() - t0)
                    write_state(run_dir, state)
                    print(" failed", flush=True)
                    failed = e
                    break
                state["phases"][name].update(status="done", seconds=round(time.time() - t0, 1))
                write_state(run_dir, state)
                print(f" done in {time.time() - t0:.0f}s", flush=True)
    finally:
        _final_report(run_dir, budgets)
    if failed:
        raise UserError(f"{failed}; see {run_dir / (str(failed).split()[0] + '.ipynb')}, fix it, then "
                        f"`python -m lib.pipeline run --profile {profile_name} --resume {run_dir.name}`")
    print(summary(run_dir, time.time() - t_run), flush=True)
    return run_dir


def _final_report(run_dir: Path, budgets_path: Path) -> None:
    """A budget report follows every run, also a failed one."""
    try:
        from lib.budget import load_budgets, write_report

        write_report(run_dir, load_budgets(budgets_path))
    except Exception as e:  # the report must never hide the run's own outcome
        print(f"warning: budget report not written ({e})", file=sys.stderr)


def summary(run_dir: Path, seconds: float) -> str:
    lines = [f"\nrun {run_dir.name} finished in {seconds / 60:.1f} min -> {run_dir}"]
    counts = {name: _count_lines(run_dir / "data" / name) for name in ("generated.jsonl", "clean.jsonl")}
    lines.append(f"  data: {counts['generated.jsonl']} generated, {counts['clean.jsonl']} kept after cleaning")
    metrics = _read_json(run_dir / "train" / "metrics.json")
    if metrics:
        lines.append(f"  held-out loss: base {metrics.get('base_heldout_loss', float('nan')):.3f} -> "
                     f"fine-tuned {metrics.get('tuned_heldout_loss', float('nan')):.3f}")
    results = _read_json(run_dir / "eval" / "results.json")
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


def _read_json(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ----------------------------------------------------------------------------- CLI
@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lib.pipeline", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the notebooks of a profile into runs/<id>/")
    r.add_argument("--profile", default="local", help="profile name in lib/profiles/ or a path (default: local)")
    r.add_argument("--run-id", help="name of the run directory (default: <profile>-<timestamp>)")
    r.add_argument("--resume", metavar="RUN_ID", help="continue a run: finished phases are skipped")
    r.add_argument("--set", action="append", default=[], metavar="NB.PARAM=VALUE", help="override a notebook parameter")
    r.add_argument("--budgets", help="budgets file (default: budgets.yaml)")
    sub.add_parser("profiles", help="list profiles")
    args = ap.parse_args(argv)
    # SIGTERM (a spot kill, `kill`, a CI timeout) unwinds like Ctrl-C: the local server is
    # stopped, the phase is marked, and the budget report is still written.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.cmd == "profiles":
        for p in sorted(PROFILES.glob("*.yaml")):
            print(f"{p.stem:10s} {load_profile(str(p)).get('description', '').strip()}")
        return
    run(args.profile, run_id=args.run_id, resume=args.resume, sets=args.set, budgets_path=args.budgets)


if __name__ == "__main__":
    main()
