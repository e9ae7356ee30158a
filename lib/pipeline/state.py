"""Where a run lives and what it has done: the run directory and pipeline.json, one writer per node.

On a multi-node SkyPilot task every node runs the same command; node 0 (SKYPILOT_NODE_RANK)
writes `<nb>.ipynb` and pipeline.json, node r writes `<nb>.node<r>.ipynb` and
`pipeline.node<r>.json`, so nodes never write the same file. pipeline.json records the
profile, the overrides from the environment and each phase's status and parameters; a
phase marked done is skipped when the run resumes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from lib.core.errors import UserError
from lib.core.files import atomic_write, read_json
from lib.core.paths import new_run_id, runs_dir, valid_run_id

STATE = "pipeline.json"


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
    return read_json(state_path(run_dir, rank), {"phases": {}})


def write_state(run_dir: Path, state: dict, rank: int = 0) -> None:
    atomic_write(state_path(run_dir, rank), json.dumps(state, indent=2))


def plain(params: dict) -> dict:
    """Parameters as recorded in pipeline.json (JSON-safe; no secrets ever reach here: keys are refused)."""
    return json.loads(json.dumps(params, default=str))


def choose_run_dir(profile_name: str, *, run_id: str | None, resume: str | None, run_dir: str | None) -> Path:
    """The run directory `--run-dir`, `--resume` or `--run-id` names (checked, nothing created)."""
    if run_dir and (resume or run_id):
        raise UserError("--run-dir names the run directory itself: drop --run-id/--resume (it resumes by itself)")
    if run_dir:
        path = Path(run_dir).resolve()
        if path.exists() and not path.is_dir():
            raise UserError(f"--run-dir {path} is a file: pass a directory")
        return path
    if resume:
        path = runs_dir() / resume
        if not (path / STATE).exists():
            raise UserError(f"nothing to resume at {path}: check the run id (ls {runs_dir()})")
        return path
    run_id = run_id or new_run_id(profile_name)
    if not valid_run_id(run_id):
        raise UserError(f"run id {run_id!r} is not a plain name: use letters, digits, '.', '_' or '-'")
    path = runs_dir() / run_id
    if path.exists():
        raise UserError(f"{path} already exists: pick another --run-id or pass --resume {run_id}")
    return path
