"""Run the whole loop: generate -> clean -> train -> evaluate -> budget report.

    python -m lib.pipeline run --profile local            # the laptop loop, embedded model, $0
    python -m lib.pipeline run --profile local --resume run-20261121-120000
    python -m lib.pipeline run --profile openai --set 01_generate.num_instructions_to_generate=52000
    python -m lib.pipeline run --profile alpaca_7b --phases 03_train --run-dir /shear/alpaca-1   # a sky task

Each phase is a notebook executed by papermill (lib/pipeline/execute.py) into runs/<id>/ with
the parameters of a profile (lib/core/profiles.py) plus `--set` overrides; a parameter a
notebook does not declare is refused. A cloud profile is checked against the laptop values
that must never reach a paid node (lib/pipeline/cloud_rules.py); the only way around a
profile value is an environment variable the profile declares under `env:` (e.g.
`sky jobs launch ... --env BASE_MODEL=...`), printed, recorded in pipeline.json and handed to
notebooks that declare `overrides`.

Nothing is written before the inputs check out (lib/pipeline/preflight.py: budgets.yaml,
endpoints and keys, the base model). A failed phase leaves the executed notebook up to the
failing cell; `--resume <id>` re-runs from that phase, keeping everything already paid for.
`--run-dir` names the run directory itself (a bucket mount in the cloud) and `--phases` runs
some of the profile's notebooks there; both resume the same way. On a multi-node task each
node writes its own files (lib/pipeline/state.py) and node 0 the budget report.
"""
from __future__ import annotations

import time
from pathlib import Path

from lib.core.errors import UserError
from lib.core.params import declared_params
from lib.core.paths import BUDGETS_YAML
from lib.core.profiles import apply_env_overrides, load_profile, notebook_params, parse_sets, select_phases
from lib.pipeline.cloud_rules import check_cloud
from lib.pipeline.execute import PhaseFailed, execute
from lib.pipeline.preflight import SHARED_ENDPOINT_PARAMS, preflight, shared_teacher
from lib.pipeline.state import choose_run_dir, node_name, node_rank, plain, read_state, write_state
from lib.pipeline.summary import final_report, summary


def run(profile_name: str, *, run_id: str | None = None, resume: str | None = None, sets: list[str] = (),
        budgets_path: str | None = None, phases: str | None = None, run_dir: str | None = None,
        redo: bool = False) -> Path:
    # ---- inputs: the profile, its parameters and every check; nothing is written before they pass
    profile = load_profile(profile_name)
    budgets = Path(budgets_path) if budgets_path else BUDGETS_YAML
    rank = node_rank()
    plan = notebook_params(profile, parse_sets(list(sets)), select_phases(profile, phases))
    check_cloud(profile, plan)
    overrides = apply_env_overrides(profile, plan)
    run_dir = choose_run_dir(Path(profile["path"]).stem, run_id=run_id, resume=resume, run_dir=run_dir)
    preflight(profile, budgets, plan)

    # ---- the run directory and its state (pipeline.json, or pipeline.node<r>.json)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    state = read_state(run_dir, rank)
    state.update(profile=profile["path"], budgets=str(budgets), started=state.get("started") or time.time())
    if overrides:
        state.setdefault("overrides", {}).update(overrides)
    write_state(run_dir, state, rank)
    print(f"run {run_dir.name}{f' (node {rank})' if rank else ''}: {profile.get('description', '').strip()}",
          flush=True)

    # ---- the phases in order, sharing one teacher server; a budget report whatever happens
    t_run = time.time()
    todo = [src for name, src, _ in plan if redo or not _done(state, name)]
    endpoints = {base for base, _ in SHARED_ENDPOINT_PARAMS}
    failed = None
    try:
        with shared_teacher(profile, run_dir, needed=any(endpoints & set(declared_params(s)) for s in todo)) as shared:
            for i, (name, src, params) in enumerate(plan, 1):
                if not redo and _done(state, name):
                    print(f"[{i}/{len(plan)}] {name}: done earlier, skipped", flush=True)
                    continue
                print(f"[{i}/{len(plan)}] {name} ...", end="", flush=True)
                full = phase_params(src, params, shared, run_dir=run_dir, budgets=budgets)
                failed = run_phase(name, src, full, run_dir=run_dir, state=state, rank=rank, profile=profile)
                if failed:
                    break
    finally:
        if rank == 0:  # one report per run, from node 0
            final_report(run_dir, budgets)
    if failed:
        again = (f"--resume {run_dir.name}" if resume or run_id
                 else f"--run-dir {run_dir}" + (f" --phases {phases}" if phases else ""))
        raise UserError(f"{failed}, fix it, then `python -m lib.pipeline run --profile {profile_name} {again}`")
    print(summary(run_dir, time.time() - t_run), flush=True)
    return run_dir


def _done(state: dict, name: str) -> bool:
    return state["phases"].get(name, {}).get("status") == "done"


def phase_params(src: Path, params: dict, shared: dict, *, run_dir: Path, budgets: Path) -> dict:
    """What the notebook gets: the shared endpoint where the profile names none, the profile's
    parameters, and the run's own paths and overrides where the notebook declares them."""
    declared = declared_params(src)
    full = {k: v for k, v in shared.items() if k in declared and not params.get(k)}
    full.update({k: v for k, v in params.items() if k != "__overrides__"})
    run_params = {"run_dir": str(run_dir), "budgets_path": str(budgets), "overrides": params.get("__overrides__") or {}}
    full.update({k: v for k, v in run_params.items() if k in declared})
    return full


def run_phase(name: str, src: Path, params: dict, *, run_dir: Path, state: dict, rank: int, profile: dict) -> str | None:
    """Execute one notebook, recording it in the state before and after; the failure's line, or None."""
    t0 = time.time()
    state["phases"][name] = {"status": "running", "started": t0, "profile": profile["path"], "params": plain(params)}
    write_state(run_dir, state, rank)
    out = run_dir / node_name(name, rank, ".ipynb")
    try:
        execute(node_name(name, rank, ""), src, out, params, log_dir=run_dir / "logs")
    except PhaseFailed as e:
        state["phases"][name].update(status="failed", error=str(e), seconds=time.time() - t0)
        write_state(run_dir, state, rank)
        print(" failed", flush=True)
        return f"{e}; see {out}"
    state["phases"][name].update(status="done", seconds=round(time.time() - t0, 1))
    write_state(run_dir, state, rank)
    print(f" done in {time.time() - t0:.0f}s", flush=True)
    return None
