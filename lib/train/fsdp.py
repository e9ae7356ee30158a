"""FSDP settings derived from the model, and the torchrun command line for one or many nodes.

The wrap class is read from the model (`_no_split_modules`: the blocks transformers itself
never splits across devices = the decoder layers), never typed per model: a wrong or
missing wrap class silently wraps the whole model as one unit, which all-gathers every
parameter at once and once turned a 3-hour Alpaca run into 24.

On a SkyPilot node (or locally) `python -m lib.train.fsdp <sft arguments>` replaces itself
with the right torchrun command for that node, e.g. in a task's `run:` section:

    python -m lib.train.fsdp --recipe alpaca_7b --data ~/data/clean.jsonl \
        --output-dir /ckpt/model --checkpoint-dir /ckpt/checkpoints --run-dir /ckpt/run

Sharding is full (FSDP2 `reshard_after_forward=True`, i.e. FULL_SHARD); the final save
gathers a FULL_STATE_DICT on rank 0 with CPU offload (accelerate's `cpu_offload=True,
broadcast_from_rank0=True` / `FullStateDictConfig(offload_to_cpu=True, rank0_only=True)`),
which avoids the known OOM of gathering a 7B/13B state dict on every GPU.
"""
from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping

from lib.errors import UserError


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
    """Nodes, rank and GPUs per node from SkyPilot's variables; one local node otherwise."""
    env = os.environ if env is None else env
    ips = [ip.strip() for ip in (env.get("SKYPILOT_NODE_IPS") or "").split() if ip.strip()]
    nnodes = max(len(ips), 1)
    try:
        rank = int(env.get("SKYPILOT_NODE_RANK", "0"))
        per_node = int(nproc or env.get("SKYPILOT_NUM_GPUS_PER_NODE") or 1)
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


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    cmd = torchrun_command(args, master_port=int(os.environ.get("SHEAR_MASTER_PORT", "29500")))
    print("$", shell(cmd), flush=True)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    from lib.errors import cli

    cli(main)()
