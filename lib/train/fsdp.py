"""FSDP settings derived from the model, and the torchrun command line for one or many nodes.

The wrap class is read from the model (`_no_split_modules`: the blocks transformers itself
never splits across devices = the decoder layers), never typed per model: a wrong or
missing wrap class silently wraps the whole model as one unit, which all-gathers every
parameter at once and once turned a 3-hour Alpaca run into 24.

03_train calls `train_on_cluster(cfg, nproc=...)`: with nproc=0 (what the cloud profiles
say) every node runs SKYPILOT_NUM_GPUS_PER_NODE workers (one on a node without GPUs, as in
the 2-node CPU rehearsal) and torchrun joins the nodes of SKYPILOT_NODE_IPS; one process on
one node trains in the calling process. By hand, `python -m lib.train.fsdp <sft arguments>`
replaces itself with the torchrun command for this node:

    python -m lib.train.fsdp --recipe alpaca_7b --data ~/data/clean.jsonl \
        --output-dir /ckpt/model --checkpoint-dir /ckpt/checkpoints --run-dir /ckpt/run

Sharding is full (FSDP2 `reshard_after_forward=True`, i.e. FULL_SHARD); the final save
gathers a FULL_STATE_DICT on rank 0 with CPU offload (accelerate's `cpu_offload=True,
broadcast_from_rank0=True` / `FullStateDictConfig(offload_to_cpu=True, rank0_only=True)`),
which avoids the known OOM of gathering a 7B/13B state dict on every GPU.
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

from lib.core.errors import UserError
from lib.core.paths import REPO


def decoder_layer_classes(model) -> list[str]:
    """Class names of the model's repeated blocks, checked against the modules actually present."""
    from lib.train.packing import base_model

    m = base_model(model)
    names = list(getattr(m, "_no_split_modules", None) or [])
    present = {type(mod).__name__ for mod in m.modules()}
    found = [n for n in names if n in present]
    if not found:
        raise UserError(
            f"{type(m).__name__} names no decoder-layer class (_no_split_modules={names}): "
            "FSDP would wrap the whole model as one unit; use a transformers model class that declares it"
        )
    return found


def fsdp_config(model, *, activation_checkpointing: bool, cpu_offload: bool = False) -> dict:
    """`TrainingArguments(fsdp=True, fsdp_config=...)` for full sharding of this model."""
    return {
        "version": 2,
        "reshard_after_forward": True,  # FULL_SHARD: parameters are re-sharded after each layer's forward
        "transformer_layer_cls_to_wrap": decoder_layer_classes(model),
        "state_dict_type": "FULL_STATE_DICT",  # gathered on rank 0, offloaded to CPU at save
        "activation_checkpointing": bool(activation_checkpointing),
        "cpu_ram_efficient_loading": False,
        "cpu_offload": bool(cpu_offload),
    }


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


def billed_instance(hardware, *, on_gpu: bool, env: Mapping[str, str] | None = None) -> tuple[str, int] | None:
    """(accelerator, GPUs) this node is paid for, or None on a laptop CPU.

    On a SkyPilot node the node costs the instance the task asked for whatever torch sees, so
    its intervals are priced as the recipe's accelerator x SKYPILOT_NUM_GPUS_PER_NODE (x the
    recipe's GPUs per node when the node reports none, as the CPU rehearsal of an 8-GPU task
    does); off SkyPilot, the GPUs this node trains on."""
    env = os.environ if env is None else env
    if str(hardware.accelerator).lower() == "cpu":  # a laptop recipe
        return None
    if env.get("SKYPILOT_TASK_ID"):
        gpus = int(env.get("SKYPILOT_NUM_GPUS_PER_NODE") or 0) or max(int(hardware.gpus_per_node), 1)
        return hardware.accelerator, gpus
    if on_gpu:
        return hardware.accelerator, int(env.get("LOCAL_WORLD_SIZE", "1"))
    return None


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


def train_on_cluster(cfg, *, nproc: int = 0, log_path: str | os.PathLike, env: Mapping[str, str] | None = None,
                     metrics_wait_s: float = 600.0) -> dict:
    """Train `cfg` (a lib.train.sft.TrainConfig) on this node's share of the cluster; return the metrics.

    nproc: processes on this node; 0 = one per GPU (SKYPILOT_NUM_GPUS_PER_NODE), one without GPUs.
    One process on one node trains here; anything bigger goes through torchrun, after the base
    model has been found (a missing one fails in seconds with one line, before any worker or
    GPU-hour). Every node runs this with the same config: node 0's rank 0 writes the metrics,
    the other nodes read them once they appear (they share the bucket)."""
    from lib.core.errors import UserError
    from lib.train.sft import check_base_model, config_to_args, train

    env = dict(os.environ if env is None else env)
    c = cluster_from_env(env, nproc or None)
    if c["nnodes"] == 1 and c["nproc_per_node"] == 1:
        return train(cfg)
    model_id = check_base_model(cfg)
    cmd = torchrun_command(config_to_args(cfg), env=env, nproc=c["nproc_per_node"],
                           master_port=int(env.get("SHEAR_MASTER_PORT") or 29500))
    env.setdefault("OMP_NUM_THREADS", "1")
    log = Path(log_path)
    if c["node_rank"]:
        log = log.with_name(f"{log.stem}.node{c['node_rank']}{log.suffix}")
    log.parent.mkdir(parents=True, exist_ok=True)
    metrics = Path(cfg.metrics_path)
    t0 = time.time()
    print(f"{model_id}: node {c['node_rank']} of {c['nnodes']} x {c['nproc_per_node']} process(es) "
          f"= world size {c['nnodes'] * c['nproc_per_node']}", flush=True)
    print("$", shell(cmd), f"> {log}", flush=True)
    with open(log, "ab") as f:
        # from the repository root: `-m lib.train.sft` must import wherever Jupyter was started
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    if rc != 0:
        lines = log.read_text(errors="replace").strip().splitlines()
        # a worker's UserError line, else its exception, else the last line that says something
        said = ([ln for ln in lines if ln.startswith("error: ")] or [ln for ln in lines if "Error" in ln]
                or [ln for ln in lines if any(ch.isalnum() for ch in ln)] or ["(empty log)"])
        raise UserError(f"training workers failed (exit {rc}): {said[-1].strip()[:300]} -- full log in {log}")
    # Node 0 wrote the metrics before the workers' last barrier; on a bucket mount another node
    # may see the file a little later.
    while not (metrics.exists() and metrics.stat().st_mtime >= t0 - 1):
        if time.time() - t0 > metrics_wait_s:
            raise UserError(f"training finished but {metrics} from node 0 did not appear within "
                            f"{metrics_wait_s:.0f} s: check the bucket mount")
        time.sleep(2)
    return json.loads(metrics.read_text())


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    cmd = torchrun_command(args, master_port=int(os.environ.get("SHEAR_MASTER_PORT", "29500")))
    print("$", shell(cmd), flush=True)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    from lib.core.errors import cli

    cli(main)()
