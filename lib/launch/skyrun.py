"""Run a SkyPilot task's `setup` and `run` scripts here, as one or more nodes without a GPU.

SkyPilot parses a YAML but never executes its scripts before they reach a cloud VM, where a
typo costs a provisioning round trip. This runner executes them locally with the variables
SkyPilot sets on a node (SKYPILOT_TASK_ID, SKYPILOT_NODE_RANK, SKYPILOT_NODE_IPS,
SKYPILOT_NUM_NODES, SKYPILOT_NUM_GPUS_PER_NODE, SKYPILOT_CLUSTER_INFO), the task's `envs`
with `--env` overrides, and the bucket mount replaced by a local directory. `--nodes 2`
starts the run script twice at once, as node 0 and node 1 on 127.0.0.1 (torchrun joins them
over gloo), the way SkyPilot runs it on every node of a cluster.

    python -m lib.launch.skyrun sky/generate.yaml --root /tmp/bucket --env NUM_INSTRUCTIONS=20 --env PIP=true
    python -m lib.launch.skyrun sky/train_7b.yaml --root /tmp/bucket --skip-setup     # fails: no huggyllama/llama-7b here
    python -m lib.launch.skyrun sky/train_7b.yaml --root /tmp/bucket --skip-setup --nodes 2 \
        --env BASE_MODEL=/tmp/tiny-llama --task-id sky-managed-x_train_1-0

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

from lib.core.errors import UserError, cli
from lib.core.paths import REPO


@dataclass
class StepResult:
    step: str
    returncode: int
    seconds: float
    node: int = 0


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


def node_env(cfg: dict, *, root: Path, task_id: str, overrides: dict[str, str], rank: int = 0, nodes: int = 1,
             cloud: str = "local", region: str | None = None) -> dict[str, str]:
    """The environment node `rank` of a `nodes`-node SkyPilot cluster would see, with the bucket at `root`."""
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
        "SKYPILOT_NODE_RANK": str(rank),
        "SKYPILOT_NODE_IPS": "\n".join(["127.0.0.1"] * nodes),
        "SKYPILOT_NUM_NODES": str(nodes),
        "SKYPILOT_NUM_GPUS_PER_NODE": overrides.get("SKYPILOT_NUM_GPUS_PER_NODE", "0"),
        "SKYPILOT_CLUSTER_INFO": json.dumps({"cluster_name": "local", "cloud": cloud, "region": region,
                                             "zone": None, "num_nodes": nodes}),
        "SHEAR_ROOT": str(root),
    })
    # The project's interpreter first on PATH, as `python` would be on a set-up VM.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def check_nodes(nodes: int) -> None:
    """Before anything runs or the bucket is made: a cluster has at least one node."""
    if nodes < 1:
        raise UserError(f"--nodes {nodes}: need at least one node")


def start_nodes(path: str | os.PathLike, *, root: str | os.PathLike, env: dict[str, str] | None = None,
                task_id: str | None = None, nodes: int = 1, step: str = "run", log_dir: str | os.PathLike | None = None,
                cloud: str = "local", region: str | None = None) -> list[subprocess.Popen]:
    """Start one script (`run` or `setup`) on every node at once; each node is its own process
    group (`kill_node` takes one down as a preemption would). Logs go to <log_dir>/node<rank>.log."""
    cfg = load_yaml(path)
    check_nodes(nodes)
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    name = cfg.get("name") or Path(path).stem
    task_id = task_id or f"sky-local-{time.strftime('%Y-%m-%d-%H-%M-%S')}_{name}_1-0"
    procs = []
    for rank in range(nodes):
        node = node_env(cfg, root=root, task_id=task_id, overrides=dict(env or {}), rank=rank, nodes=nodes,
                        cloud=cloud, region=region)
        out = open(Path(log_dir) / f"node{rank}.log", "ab") if log_dir else None
        procs.append(subprocess.Popen(["bash", "-c", cfg.get(step) or "true"], cwd=REPO, env=node, stdout=out,
                                      stderr=subprocess.STDOUT if out else None, start_new_session=True))
        if out:
            out.close()
    return procs


def kill_node(proc: subprocess.Popen) -> None:
    """SIGKILL a node and everything it started, as a spot preemption does. The process tree is
    walked, not the process group: Jupyter starts notebook kernels in sessions of their own."""
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    for p in [psutil.Process(proc.pid), *tree] if proc.poll() is None else tree:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()


def run_task(path: str | os.PathLike, *, root: str | os.PathLike, env: dict[str, str] | None = None,
             task_id: str | None = None, skip_setup: bool = False, setup_only: bool = False,
             timeout: float | None = None, log=None, nodes: int = 1, log_dir: str | os.PathLike | None = None,
             cloud: str = "local", region: str | None = None) -> list[StepResult]:
    """Run setup (unless skipped) then run (unless setup_only) on every node; stops after the
    first step that fails on any node. One node may log to the file object `log`; many log to
    `log_dir` (one file per node)."""
    cfg = load_yaml(path)
    check_nodes(nodes)
    name = cfg.get("name") or Path(path).stem
    task_id = task_id or f"sky-local-{time.strftime('%Y-%m-%d-%H-%M-%S')}_{name}_1-0"
    results = []
    steps = [] if skip_setup else ["setup"]
    if not setup_only:
        steps.append("run")
    for step in steps:
        if not cfg.get(step):
            continue
        t0 = time.time()
        if nodes == 1 and log_dir is None:
            node = node_env(cfg, root=Path(root).resolve(), task_id=task_id, overrides=dict(env or {}),
                            cloud=cloud, region=region)
            Path(root).mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(["bash", "-c", cfg[step]], cwd=REPO, env=node, stdout=log,
                                  stderr=subprocess.STDOUT if log else None, timeout=timeout)
            results.append(StepResult(step, proc.returncode, time.time() - t0))
        else:
            procs = start_nodes(path, root=root, env=env, task_id=task_id, nodes=nodes, step=step, log_dir=log_dir,
                                cloud=cloud, region=region)
            try:
                for rank, p in enumerate(procs):
                    left = None if timeout is None else max(timeout - (time.time() - t0), 1)
                    p.wait(timeout=left)
                    results.append(StepResult(step, p.returncode, time.time() - t0, rank))
            finally:
                for p in procs:  # a timeout (or Ctrl-C) takes every node down
                    if p.poll() is None:
                        kill_node(p)
        if any(r.returncode != 0 for r in results if r.step == step):
            break
    return results


def env_flags(items: list[str]) -> dict[str, str]:
    """`--env KEY=VALUE` flags (as `sky launch` takes them) into a dict; one line when malformed."""
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--env {item!r} is malformed: write --env KEY=VALUE")
        env[key] = value
    return env


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lib.launch.skyrun", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task_yaml")
    ap.add_argument("--root", required=True, help="local directory standing in for the bucket mount")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--task-id", default=None, help="SKYPILOT_TASK_ID (reuse one to simulate a recovery)")
    ap.add_argument("--skip-setup", action="store_true")
    ap.add_argument("--nodes", type=int, default=1, help="run the script as this many nodes on 127.0.0.1 at once")
    ap.add_argument("--cloud", default="local", help="cloud in SKYPILOT_CLUSTER_INFO (prices come from its catalog)")
    ap.add_argument("--region", default=None, help="region in SKYPILOT_CLUSTER_INFO")
    args = ap.parse_args(argv)
    results = run_task(args.task_yaml, root=args.root, env=env_flags(args.env), task_id=args.task_id, skip_setup=args.skip_setup,
                       nodes=args.nodes, cloud=args.cloud, region=args.region)
    for r in results:
        print(f"{r.step}" + (f" node {r.node}" if args.nodes > 1 else "") + f": exit {r.returncode} after {r.seconds:.1f}s")
    bad = [r.returncode for r in results if r.returncode != 0]
    if not results or bad:
        raise SystemExit(bad[0] if bad else 1)


if __name__ == "__main__":
    main()
