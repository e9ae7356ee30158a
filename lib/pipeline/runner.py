"""Run the whole loop: generate -> clean -> train -> evaluate -> budget report.

    python -m lib.pipeline run --profile local            # the laptop loop, embedded model, $0
    python -m lib.pipeline run --profile local --resume run-20261121-120000
    python -m lib.pipeline run --profile openai --set 01_generate.num_instructions_to_generate=52000
    python -m lib.pipeline run --profile alpaca_7b --phases 03_train --run-dir /shear/alpaca-1   # a sky task

Each phase is a notebook executed by papermill into runs/<id>/ with the parameters of a
profile (lib/profiles/<name>.yaml) plus `--set` overrides. Profiles are data: which
notebooks run, and with what. Parameters a notebook does not declare are refused (a typo
in a profile must not silently fall back to a default). When the profile's teacher is the
embedded model, one local server is started for the whole run and shared by every phase.

Nothing is written before the inputs check out (profile, budgets.yaml, teacher endpoint and
key). A failed phase leaves the executed notebook up to the failing cell; `--resume <id>`
re-runs from that phase, keeping everything already paid for. `--run-dir` names the run
directory itself (a bucket mount in the cloud) and `--phases` runs some of the profile's
notebooks there; both resume the same way.

Cloud profiles (`target: cloud`) are what the sky/*.yaml tasks run. They must name every
parameter whose notebook default is a laptop value, and such values are refused in them
(CLOUD_RULES): the embedded model, a demo step cap, one process on a multi-GPU node, an
unpinned judge. The only way around a profile value is an environment variable the profile
declares under `env:` (e.g. `sky jobs launch ... --env BASE_MODEL=...`): the runner prints
it, records it in pipeline.json and hands it to notebooks that declare `overrides`.

On a multi-node SkyPilot task every node runs the same command; node 0 (SKYPILOT_NODE_RANK)
writes `<nb>.ipynb`, pipeline.json and the budget report, node r writes
`<nb>.node<r>.ipynb` and `pipeline.node<r>.json`, so nodes never write the same file.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import yaml

from lib.core.errors import UserError, cli
from lib.core.files import atomic_write
from lib.core.model import LAPTOP_MODELS
from lib.core.params import declared_params
from lib.core.paths import BUDGETS_YAML, LIB, NOTEBOOKS, REPO, new_run_id, runs_dir, valid_run_id

PROFILES = LIB / "profiles"
STATE = "pipeline.json"
# Parameters the runner fills in for any notebook that declares them.
SHARED_ENDPOINT_PARAMS = (("teacher_base_url", "teacher_model"), ("judge_base_url", "judge_model"))
PROFILE_KEYS = ("description", "target", "teacher", "params", "notebooks", "env")
_DATED = re.compile(r"\d{4}-\d{2}-\d{2}|\d{4}$")  # gpt-4o-2024-08-06, claude-...-20241022, gpt-4-0613

# Laptop defaults that must never reach a paid node. Each notebook default below is a laptop
# value, so a cloud profile must NAME the parameter (a forgotten line would otherwise fall
# back to the default silently, which is how "Alpaca-7B on A100x8" once trained SmolLM2-135M
# for 6 steps), and the value it names is checked: (refused if, why, what to write instead).
CLOUD_RULES: dict[str, dict[str, tuple]] = {
    "01_generate": {
        "teacher_base_url": (lambda v, p: not v, "empty serves the embedded 135M model", "a hosted endpoint"),
        "teacher_model": (lambda v, p: v in LAPTOP_MODELS, "the embedded 135M model", "the hosted teacher's id"),
        "num_instructions_to_generate": (lambda v, p: int(v) < 1000, "a laptop-sized target", "e.g. 52000"),
    },
    "02_clean": {
        "tokenizer": (lambda v, p: v in LAPTOP_MODELS, "the embedded model's tokenizer",
                      "the training recipe's tokenizer, e.g. huggyllama/llama-7b"),
        "max_tokens": (lambda v, p: int(v) == 0, "no token budget", "the recipe's max_length or context"),
    },
    "03_train": {
        "recipe": (lambda v, p: v in LAPTOP_MODELS, "a laptop recipe", "a recipe in lib/recipes/"),
        "model": (lambda v, p: v != _recipe_base(p.get("recipe")), "not the recipe's base model",
                  "the recipe's base_model (or launch with --env BASE_MODEL=...)"),
        "max_steps": (lambda v, p: int(v) != 0, "a demo step cap", "0 (the recipe's epochs)"),
        "num_train_epochs": (lambda v, p: float(v) != 0, "not the recipe's epochs", "0 (the recipe's epochs)"),
        "nproc": (lambda v, p: int(v) != 0, "a fixed process count", "0 (every GPU of every node)"),
    },
    "04_evaluate": {
        "judge_base_url": (lambda v, p: not v, "empty serves the embedded 135M judge", "a hosted endpoint"),
        "judge_model": (lambda v, p: v in LAPTOP_MODELS or not _DATED.search(str(v)), "not a dated snapshot",
                        "a pinned judge such as gpt-4o-2024-08-06"),
        "question_set": (lambda v, p: str(v).startswith("own"), "the project's own small set", "e.g. vicuna:<url>"),
        "max_questions": (lambda v, p: int(v) != 0, "a sample", "0 (every question of the set)"),
        "models": (lambda v, p: any(str(m) in LAPTOP_MODELS for m in dict(v).values()), "the embedded model",
                   "the recipe's base model and {run_dir}/model"),
    },
}


def _recipe_base(recipe) -> str | None:
    from lib.train.recipes import load_recipe

    return load_recipe(str(recipe)).base_model if recipe else None


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
    unknown = set(prof) - set(PROFILE_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown key(s) {sorted(unknown)}: use {', '.join(PROFILE_KEYS)}")
    if not isinstance(prof.get("notebooks"), dict) or not prof["notebooks"]:
        raise UserError(f"{path}: `notebooks` must map notebook names to parameter dicts")
    if prof.setdefault("target", "laptop") not in ("laptop", "cloud"):
        raise UserError(f"{path}: target {prof['target']!r} is not laptop or cloud")
    env = prof.setdefault("env", {}) or {}
    for var, where in env.items():
        nb, _, param = str(where).partition(".")
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", str(var)) or nb not in prof["notebooks"] or not param:
            raise UserError(f"{path}: env {var}: {where!r} must map an UPPER_CASE variable to NOTEBOOK.PARAM "
                            "of a notebook this profile runs")
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


def select_phases(profile: dict, phases: str | None) -> list[str]:
    """The profile's notebooks to run, in the profile's order: all, or those `--phases` names."""
    every = list(profile["notebooks"])
    if not phases:
        return every
    wanted = [p.strip() for p in phases.split(",") if p.strip()]
    unknown = sorted(set(wanted) - set(every))
    if unknown or not wanted:
        raise UserError(f"--phases {phases!r} names {unknown or 'nothing'}: profile {Path(profile['path']).stem} "
                        f"runs {','.join(every)}")
    return [p for p in every if p in wanted]


def notebook_params(profile: dict, sets: dict[str, dict], phases: list[str] | None = None) -> list[tuple[str, Path, dict]]:
    """[(name, path, params)] in run order, checked against each notebook's declared parameters."""
    unknown_nb = set(sets) - set(profile["notebooks"])
    if unknown_nb:
        raise UserError(f"--set names notebook(s) {sorted(unknown_nb)} that profile does not run: use {sorted(profile['notebooks'])}")
    plan = []
    for name, params in profile["notebooks"].items():
        if phases is not None and name not in phases:
            continue
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


def check_cloud(profile: dict, plan: list[tuple[str, Path, dict]]) -> None:
    """Refuse a cloud profile (with its --set values) that would let a laptop default reach a
    paid node. Environment overrides the profile declares come later and are recorded."""
    if profile["target"] != "cloud":
        return
    named = {name: dict(params or {}) for name, params in profile["notebooks"].items()}
    for name, _, params in plan:
        for param, (bad, why, fix) in CLOUD_RULES.get(name, {}).items():
            if param not in named.get(name, {}):
                raise UserError(f"cloud profile {profile['path']} does not name {name}.{param}: its notebook default "
                                f"is a laptop value; write {param}: <{fix}> in the profile")
            try:
                refused = bad(params[param], params)
            except (TypeError, ValueError):
                raise UserError(f"cloud profile {profile['path']}: {name}.{param}={params[param]!r} has the wrong "
                                f"type: use {fix}") from None
            if refused:
                raise UserError(f"cloud profile {profile['path']}: {name}.{param}={params[param]!r} is {why}: "
                                f"use {fix}")


def apply_env_overrides(profile: dict, plan: list[tuple[str, Path, dict]], env=None) -> dict[str, dict]:
    """Set parameters from the environment variables the profile declares (non-empty ones only);
    returns {NB.PARAM: {value, from, replaced}} for the record. `NB.PARAM.KEY` sets one key of a
    dict parameter (e.g. 04_evaluate.models.base)."""
    env = os.environ if env is None else env
    done: dict[str, dict] = {}
    by_name = {name: params for name, _, params in plan}
    for var, where in (profile.get("env") or {}).items():
        raw = env.get(var, "")
        nb, _, rest = str(where).partition(".")
        if not raw.strip() or nb not in by_name:
            continue
        params = by_name[nb]
        param, _, key = rest.partition(".")
        # numbers and booleans as YAML reads them; anything else (paths, ids, URLs) stays text
        value = yaml.safe_load(raw) if not key else raw
        if not isinstance(value, int | float | bool):
            value = raw
        if key:
            old = dict(params.get(param) or {})
            replaced, old[key] = old.get(key), value
            params[param] = old
        else:
            replaced, params[param] = params.get(param), value
        done[f"{nb}.{rest}"] = {"value": value, "from": var, "replaced": replaced}
        print(f"override: {nb}.{rest} = {value!r} from ${var} (the profile says {replaced!r})", flush=True)
    for name, _, params in plan:
        mine = {k.split(".", 1)[1]: f"${v['from']} replaced {v['replaced']!r}" for k, v in done.items()
                if k.split(".", 1)[0] == name}
        if mine:
            params["__overrides__"] = mine
    return done


# ----------------------------------------------------------------------------- state
def node_rank(env=None) -> int:
    env = os.environ if env is None else env
    try:
        return int(env.get("SKYPILOT_NODE_RANK") or 0)
    except ValueError:
        raise UserError(f"SKYPILOT_NODE_RANK={env.get('SKYPILOT_NODE_RANK')!r} is not a number: check the task") from None


def node_name(name: str, rank: int, suffix: str) -> str:
    """`<name><suffix>` on node 0, `<name>.node<rank><suffix>` on the others (one writer per file)."""
    return f"{name}{suffix}" if rank == 0 else f"{name}.node{rank}{suffix}"


def state_path(run_dir: Path, rank: int = 0) -> Path:
    return run_dir / node_name(Path(STATE).stem, rank, ".json")


def read_state(run_dir: Path, rank: int = 0) -> dict:
    p = state_path(run_dir, rank)
    return json.loads(p.read_text()) if p.exists() else {"phases": {}}


def write_state(run_dir: Path, state: dict, rank: int = 0) -> None:
    atomic_write(state_path(run_dir, rank), json.dumps(state, indent=2))


# ----------------------------------------------------------------------------- checks
def preflight(profile: dict, budgets_path: Path, plan: list[tuple[str, Path, dict]] = ()) -> None:
    """Everything that can be checked before a single file is written."""
    from lib.budget import load_budgets
    from lib.budget.guard import refuse_unpriced
    from lib.core.client import Endpoint, check_endpoint

    budgets = load_budgets(budgets_path)
    for name, _, params in plan:  # endpoints a profile names per notebook (cloud profiles)
        for base, model in SHARED_ENDPOINT_PARAMS:
            if params.get(base):
                ep = Endpoint(base_url=params[base], model=params.get(model) or "",
                              api_key_env=params.get("api_key_env") or "OPENAI_API_KEY")
                refuse_unpriced(ep.billed_as, budgets.prices)  # the one billing rule (lib/core/client.py)
                ep.api_key()
                check_endpoint(ep)
    for name, _, params in plan:
        if name == "03_train" and str(params.get("model", "embedded")) not in LAPTOP_MODELS:
            # The base model is found before anything is written or any worker starts: a cloud
            # run that cannot load what it names stops here, in seconds, naming it.
            from lib.train.sft import TrainConfig, check_base_model

            model = str(params["model"])
            local = REPO / model
            check_base_model(TrainConfig(recipe=str(params.get("recipe") or "embedded"),
                                         model=str(local) if model and not Path(model).is_absolute() and local.exists()
                                         else model))
    teacher = profile.get("teacher") or "embedded"
    if teacher == "none":
        return
    if teacher != "embedded":
        if not isinstance(teacher, dict) or "base_url" not in teacher or "model" not in teacher:
            raise UserError(f"{profile['path']}: teacher must be `embedded` or {{base_url, model, api_key_env}}")
        ep = Endpoint(base_url=teacher["base_url"], model=teacher["model"],
                      api_key_env=teacher.get("api_key_env", "OPENAI_API_KEY"),
                      price_model=teacher.get("price_model") or None)
        refuse_unpriced(ep.billed_as, budgets.prices)  # the one billing rule (lib/core/client.py)
        ep.api_key()
        check_endpoint(ep)
    else:
        from lib.core.model import gguf_path

        gguf_path()


@contextlib.contextmanager
def shared_teacher(profile: dict, run_dir: Path, needed: bool = True):
    """Start one embedded server for the run (lib.core.server.embedded_server); yield the params every notebook gets.
    `needed`: some notebook to run takes an endpoint (a training-only run starts no server)."""
    teacher = profile.get("teacher") or "embedded"
    if teacher == "none" or not needed:
        yield {}
        return
    if teacher != "embedded":
        params = {}
        for base, model in SHARED_ENDPOINT_PARAMS:
            params[base], params[model] = teacher["base_url"], teacher["model"]
        params["api_key_env"] = teacher.get("api_key_env", "OPENAI_API_KEY")
        yield params
        return
    from lib.core.server import embedded_server

    with embedded_server(log_path=run_dir / "logs" / "teacher-server.log") as srv:
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
        budgets_path: str | None = None, phases: str | None = None, run_dir: str | None = None,
        redo: bool = False) -> Path:
    profile = load_profile(profile_name)
    budgets = Path(budgets_path) if budgets_path else BUDGETS_YAML
    rank = node_rank()
    plan = notebook_params(profile, parse_sets(list(sets)), select_phases(profile, phases))
    check_cloud(profile, plan)
    overrides = apply_env_overrides(profile, plan)
    if run_dir and (resume or run_id):
        raise UserError("--run-dir names the run directory itself: drop --run-id/--resume (it resumes by itself)")
    if run_dir:
        run_dir = Path(run_dir).resolve()
        if run_dir.exists() and not run_dir.is_dir():
            raise UserError(f"--run-dir {run_dir} is a file: pass a directory")
    elif resume:
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
    preflight(profile, budgets, plan)

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "logs").mkdir(exist_ok=True)
    state = read_state(run_dir, rank)
    state.update(profile=profile["path"], budgets=str(budgets), started=state.get("started") or time.time())
    if overrides:
        state.setdefault("overrides", {}).update(overrides)
    write_state(run_dir, state, rank)
    where = f" (node {rank})" if rank else ""
    print(f"run {run_dir.name}{where}: {profile.get('description', '').strip()}", flush=True)
    t_run = time.time()
    failed = None
    todo = [(n, src) for n, src, _ in plan if redo or state["phases"].get(n, {}).get("status") != "done"]
    needs_endpoint = any(set(declared_params(src)) & {b for b, _ in SHARED_ENDPOINT_PARAMS} for _, src in todo)
    try:
        with shared_teacher(profile, run_dir, needed=needs_endpoint) as shared:
            for i, (name, src, params) in enumerate(plan, 1):
                declared = declared_params(src)
                full = {k: v for k, v in shared.items() if k in declared and not params.get(k)}
                full.update({k: v for k, v in params.items() if k != "__overrides__"})
                full.update({k: v for k, v in (("run_dir", str(run_dir)), ("budgets_path", str(budgets)),
                                               ("overrides", params.get("__overrides__") or {}))
                             if k in declared})
                if not redo and state["phases"].get(name, {}).get("status") == "done":
                    print(f"[{i}/{len(plan)}] {name}: done earlier, skipped", flush=True)
                    continue
                print(f"[{i}/{len(plan)}] {name} ...", end="", flush=True)
                t0 = time.time()
                state["phases"][name] = {"status": "running", "started": t0, "profile": profile["path"],
                                         "params": _plain(full)}
                write_state(run_dir, state, rank)
                out = run_dir / node_name(name, rank, ".ipynb")
                try:
                    execute(node_name(name, rank, ""), src, out, full, log_dir=run_dir / "logs")
                except PhaseFailed as e:
                    state["phases"][name].update(status="failed", error=str(e), seconds=time.time() - t0)
                    write_state(run_dir, state, rank)
                    print(" failed", flush=True)
                    failed = (e, out)
                    break
                state["phases"][name].update(status="done", seconds=round(time.time() - t0, 1))
                write_state(run_dir, state, rank)
                print(f" done in {time.time() - t0:.0f}s", flush=True)
    finally:
        if rank == 0:  # one report per run, from node 0
            _final_report(run_dir, budgets)
    if failed:
        if resume or run_id:
            how = f"--resume {run_dir.name}"
        else:
            how = f"--run-dir {run_dir}" + (f" --phases {phases}" if phases else "")
        raise UserError(f"{failed[0]}; see {failed[1]}, fix it, then "
                        f"`python -m lib.pipeline run --profile {profile_name} {how}`")
    print(summary(run_dir, time.time() - t_run), flush=True)
    return run_dir


def _plain(params: dict) -> dict:
    """Parameters as recorded in pipeline.json (JSON-safe; no secrets ever reach here: keys are refused)."""
    return json.loads(json.dumps(params, default=str))


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
    run(args.profile, run_id=args.run_id, resume=args.resume, sets=args.set, budgets_path=args.budgets,
        phases=args.phases, run_dir=args.run_dir, redo=args.redo)


if __name__ == "__main__":
    main()
