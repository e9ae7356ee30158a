"""Run a SkyPilot task's `setup` and `run` scripts here, as one node without a GPU.

SkyPilot parses a YAML but never executes its scripts before they reach a cloud VM, where a
typo costs a provisioning round trip. This runner executes them locally with the variables
SkyPilot sets on a node (SKYPILOT_TASK_ID, SKYPILOT_NODE_RANK, SKYPILOT_NODE_IPS,
SKYPILOT_NUM_NODES, SKYPILOT_NUM_GPUS_PER_NODE, SKYPILOT_CLUSTER_INFO), the task's `envs`
with `--env` overrides, and the bucket mount replaced by a local directory.

    python -m lib.skyrun sky/generate.yaml --root /tmp/bucket --env NB_PARAMS="-p num_instructions 4" --env PIP=true
    python -m lib.skyrun sky/train_7b.yaml --root /tmp/bucket --skip-setup --task-id sky-managed-x_train_1-0

Secrets are taken from this environment when set (as `--secret NAME` does) and never printed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from lib.errors import UserError, cli
from lib.paths import REPO


@dataclass
class StepResult:
    step: str
    returncode: int
    seconds: float


def load_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"task YAML {path} not found: pass a file in sky/")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML ({str(e).splitlines()[0]}): fix the file") from None
    if not isinstance(cfg, dict) or "run" not in cfg:
        raise UserError(f"{path} has no `run` script: add one")
    return cfg


def node_env(cfg: dict, *, root: Path, task_id: str, overrides: dict[str, str]) -> dict[str, str]:
    """The environment one SkyPilot node would see, with the bucket at `root`."""
    env = {k: v for k, v in os.environ.items()}
    for key, value in (cfg.get("envs") or {}).items():
        env[str(key)] = "" if value is None else str(value)
    env.update(overrides)
    for name in (cfg.get("secrets") or {}):
        # SkyPilot passes secrets as env vars; here they come from this shell or are absent.
        if name not in os.environ:
            env.pop(name, None)
    env.update({
        "SKYPILOT_TASK_ID": task_id,
        "SKYPILOT_NODE_RANK": "0",
        "SKYPILOT_NODE_IPS": "127.0.0.1",
        "SKYPILOT_NUM_NODES": "1",
        "SKYPILOT_NUM_GPUS_PER_NODE": overrides.get("SKYPILOT_NUM_GPUS_PER_NODE", "0"),
        "SKYPILOT_CLUSTER_INFO": json.dumps({"cluster_name": "local", "cloud": "local", "region": None,
                                             "zone": None, "num_nodes": 1}),
        "SHEAR_ROOT": str(root),
    })
    # The project's interpreter first on PATH, as `python` would be on a set-up VM.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run_task(path: str | os.PathLike, *, root: str | os.PathLike, env: dict[str, str] | None = None,
             task_id: str | None = None, skip_setup: bool = False, setup_only: bool = False,
             timeout: float | None = None, log=None) -> list[StepResult]:
    """Run setup (unless skipped) then run (unless setup_only); stops at the first failing step."""
    cfg = load_yaml(path)
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    name = cfg.get("name") or Path(path).stem
    task_id = task_id or f"sky-local-{time.strftime('%Y-%m-%d-%H-%M-%S')}_{name}_1-0"
    node = node_env(cfg, root=root, task_id=task_id, overrides=dict(env or {}))
    results = []
    steps = [("setup", cfg.get("setup"))] if not skip_setup else []
    if not setup_only:
        steps.append(("run", cfg.get("run")))
    for step, script in steps:
        if not script:
            continue
        t0 = time.time()
        proc = subprocess.run(["bash", "-c", script], cwd=REPO, env=node, stdout=log, stderr=subprocess.STDOUT if log else None,
                              timeout=timeout)
        results.append(StepResult(step, proc.returncode, time.time() - t0))
        if proc.returncode != 0:
            break
    return results


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lib.skyrun", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task_yaml")
    ap.add_argument("--root", required=True, help="local directory standing in for the bucket mount")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--task-id", default=None, help="SKYPILOT_TASK_ID (reuse one to simulate a recovery)")
    ap.add_argument("--skip-setup", action="store_true")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--env {item!r} is malformed: write --env KEY=VALUE")
        overrides[key] = value
    results = run_task(args.task_yaml, root=args.root, env=overrides, task_id=args.task_id, skip_setup=args.skip_setup)
    for r in results:
        print(f"{r.step}: exit {r.returncode} after {r.seconds:.1f}s")
    if not results or results[-1].returncode != 0:
        raise SystemExit(results[-1].returncode if results else 1)


if __name__ == "__main__":
    main()
