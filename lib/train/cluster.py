"""Training on a cluster: torchrun across SKYPILOT_NODE_IPS x the GPUs of each node.

03_train calls `train_on_cluster(cfg, nproc=...)` with SFT's TrainConfig, 08_prefer with DPO's
DpoSettings (the worker is then `python -m lib.train.dpo`): with nproc=0 (what the cloud profiles
say) every node runs SKYPILOT_NUM_GPUS_PER_NODE workers (one on a node without GPUs, as in
the 2-node CPU rehearsal) and torchrun joins the nodes of SKYPILOT_NODE_IPS; one process on
one node trains in the calling process. Each worker is `python -m lib.train.sft` with the
config as its command line (lib/core/params.py writes it). By hand,
`python -m lib.train.cluster <sft arguments>` replaces itself with the torchrun command for
this node:

    python -m lib.train.cluster --recipe alpaca_7b --data ~/data/clean.jsonl \
        --output-dir /ckpt/model --checkpoint-dir /ckpt/checkpoints --run-dir /ckpt/run
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from lib.core.errors import UserError, cli
from lib.core.model import no_progress_bars
from lib.core.params import settings_argv
from lib.core.paths import REPO
from lib.train.model import check_base_model
from lib.train.dpo import DpoSettings, train_dpo
from lib.train.sft import TrainConfig, train

# what each kind of settings trains with: the worker module torchrun starts, and the in-process run
WORKERS = {TrainConfig: ("lib.train.sft", train), DpoSettings: ("lib.train.dpo", train_dpo)}


def cluster_from_env(env: Mapping[str, str] | None = None, nproc: int | None = None) -> dict:
    """Nodes, rank and processes per node from SkyPilot's variables; one local node otherwise.
    Without `nproc`, every GPU of the node gets a process, and a node without GPUs one."""
    env = os.environ if env is None else env
    ips = [ip.strip() for ip in (env.get("SKYPILOT_NODE_IPS") or "").split() if ip.strip()]
    nnodes = max(len(ips), 1)
    try:
        rank = int(env.get("SKYPILOT_NODE_RANK", "0"))
        per_node = int(nproc or int(env.get("SKYPILOT_NUM_GPUS_PER_NODE") or 0) or 1)
    except ValueError:
        raise UserError("SKYPILOT_NODE_RANK / SKYPILOT_NUM_GPUS_PER_NODE must be integers: check the task's env") from None
    if not 0 <= rank < nnodes:
        raise UserError(f"SKYPILOT_NODE_RANK={rank} is outside the {nnodes} nodes in SKYPILOT_NODE_IPS: check the task")
    if per_node < 1:
        raise UserError(f"{per_node} processes per node: need at least 1 (SKYPILOT_NUM_GPUS_PER_NODE or nproc)")
    return {"nnodes": nnodes, "node_rank": rank, "nproc_per_node": per_node,
            "master_addr": ips[0] if ips else "127.0.0.1"}


def torchrun_command(script_args: list[str], *, env: Mapping[str, str] | None = None, nproc: int | None = None,
                     master_port: int = 29500, module: str = "lib.train.sft") -> list[str]:
    """`python -m torch.distributed.run ... -m lib.train.sft <args>` for this node of the cluster."""
    c = cluster_from_env(env, nproc)
    return [
        sys.executable, "-m", "torch.distributed.run",
        f"--nnodes={c['nnodes']}", f"--node_rank={c['node_rank']}", f"--nproc_per_node={c['nproc_per_node']}",
        f"--master_addr={c['master_addr']}", f"--master_port={master_port}",
        "-m", module, *script_args,
    ]


def shell(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


def train_on_cluster(cfg: TrainConfig | DpoSettings, *, nproc: int = 0, log_path: str | os.PathLike,
                     env: Mapping[str, str] | None = None, metrics_wait_s: float = 600.0) -> dict:
    """Train `cfg` on this node's share of the cluster; return the metrics.

    nproc: processes on this node; 0 = one per GPU (SKYPILOT_NUM_GPUS_PER_NODE), one without GPUs.
    One process on one node trains here; anything bigger goes through torchrun, after the base
    model has been found (a missing one fails in seconds with one line, before any worker or
    GPU-hour). Every node runs this with the same config: node 0's rank 0 writes the metrics,
    the other nodes read them once they appear (they share the bucket)."""
    env = dict(os.environ if env is None else env)
    module, run_here = WORKERS[type(cfg)]
    c = cluster_from_env(env, nproc or None)
    if c["nnodes"] == 1 and c["nproc_per_node"] == 1:
        with no_progress_bars():  # in a notebook's kernel: no loading / saving bar left half-way
            return run_here(cfg)
    if not cfg.metrics_path:
        raise UserError("training on a cluster needs metrics_path: the other nodes read node 0's metrics there")
    model_id = check_base_model(cfg.recipe, cfg.model)
    cmd = torchrun_command(settings_argv(cfg), env=env, nproc=c["nproc_per_node"],
                           master_port=int(env.get("SHEAR_MASTER_PORT") or 29500), module=module)
    env.setdefault("OMP_NUM_THREADS", "1")
    log = Path(log_path)
    if c["node_rank"]:
        log = log.with_name(f"{log.stem}.node{c['node_rank']}{log.suffix}")
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    print(f"{model_id}: node {c['node_rank']} of {c['nnodes']} x {c['nproc_per_node']} process(es) "
          f"= world size {c['nnodes'] * c['nproc_per_node']}", flush=True)
    print("$", shell(cmd), f"> {log}", flush=True)
    with open(log, "ab") as f:
        # from the repository root: `-m lib.train.sft` must import wherever Jupyter was started
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    if rc != 0:
        raise UserError(f"training workers failed (exit {rc}): {_last_word(log)} -- full log in {log}")
    return json.loads(wait_for_node0(Path(cfg.metrics_path), since=t0, wait_s=metrics_wait_s,
                                     what="training finished but").read_text())


def _last_word(log: Path) -> str:
    """A worker's UserError line, else its exception, else the last line that says something."""
    lines = log.read_text(errors="replace").strip().splitlines()
    said = ([ln for ln in lines if ln.startswith("error: ")] or [ln for ln in lines if "Error" in ln]
            or [ln for ln in lines if any(ch.isalnum() for ch in ln)] or ["(empty log)"])
    return said[-1].strip()[:300]


def node_rank(env: Mapping[str, str] | None = None) -> int:
    """This node's rank in the SkyPilot cluster (0 off SkyPilot): node 0 does a phase's single-node
    work (sampling and judging pairs, the comparison), every node joins the training workers."""
    return cluster_from_env(env)["node_rank"]


def wait_for_node0(path: Path, *, since: float, wait_s: float, what: str) -> Path:
    """`path` once node 0 has (re)written it at or after `since`: the nodes share the bucket, and on a
    bucket mount another node may see node 0's file a little later. A file from an earlier attempt
    (a recovered managed job) is older than `since` and is not taken."""
    while not (path.exists() and path.stat().st_mtime >= since - 1):
        if time.time() - since > wait_s:
            raise UserError(f"{what} {path} from node 0 did not appear within {wait_s:.0f} s: check node 0's "
                            "log and the bucket mount")
        time.sleep(2)
    return path


@cli
def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    cmd = torchrun_command(args, master_port=int(os.environ.get("SHEAR_MASTER_PORT", "29500")))
    print("$", shell(cmd), flush=True)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
