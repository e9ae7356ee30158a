"""FSDP settings derived from the model, and FSDP on CPU for the 2-process rehearsals.

The wrap class is read from the model (`_no_split_modules`: the blocks transformers itself
never splits across devices = the decoder layers), never typed per model: a wrong or
missing wrap class silently wraps the whole model as one unit, which all-gathers every
parameter at once and once turned a 3-hour Alpaca run into 24.

Sharding is full (FSDP2 `reshard_after_forward=True`, i.e. FULL_SHARD); the final save
gathers a FULL_STATE_DICT on rank 0 with CPU offload (accelerate's `cpu_offload=True,
broadcast_from_rank0=True` / `FullStateDictConfig(offload_to_cpu=True, rank0_only=True)`),
which avoids the known OOM of gathering a 7B/13B state dict on every GPU.

The torchrun launcher that starts the workers is lib/train/cluster.py.
"""
from __future__ import annotations

import inspect

from lib.core.errors import UserError
from lib.train.packing import base_model

# What enable_fsdp_on_cpu was written against; check_accelerate_internals names what changed.
ACCELERATE_CHECKED = "1.15.0"


def decoder_layer_classes(model) -> list[str]:
    """Class names of the model's repeated blocks, checked against the modules actually present."""
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


def sharding_arguments(model, *, fsdp: bool, gradient_checkpointing: bool, world: int, on_gpu: bool) -> dict:
    """The TrainingArguments (SFT) / DPOConfig (DPO) fields that say how the processes share the model:
    FSDP with this model's decoder layers, activation checkpointing by FSDP when it shards (by the
    Trainer otherwise), and gloo between CPU processes (the CPU rehearsal)."""
    return {
        "gradient_checkpointing": gradient_checkpointing and not fsdp,  # FSDP checkpoints activations itself
        "fsdp": fsdp,
        "fsdp_config": fsdp_config(model, activation_checkpointing=gradient_checkpointing) if fsdp else None,
        "ddp_backend": "gloo" if (world > 1 and not on_gpu) else None,
    }


def fsdp_units(wrapped) -> list[str]:
    """Class names of the FSDP units in the model as Trainer wrapped it ([] = not sharded)."""
    return sorted({type(m).__name__ for m in wrapped.modules() if type(m).__name__.startswith("FSDP")})


# ---------------------------------------------------------------------------- FSDP on CPU
# accelerate turns FSDP on only for accelerator backends (MULTI_GPU, ...), never for
# MULTI_CPU, although torch's FSDP2 runs on CPU tensors over gloo; neither accelerate 1.15
# nor transformers 5.17 has a supported switch for it (AcceleratorState sets FSDP only in
# its accelerator branch). So the CPU rehearsals of the FSDP path write accelerate's shared
# state themselves, and check_accelerate_internals pins the private names that takes.


def check_accelerate_internals() -> None:
    """Raise one RuntimeError naming every private accelerate name enable_fsdp_on_cpu relies
    on that the installed accelerate no longer has (tests/test_train_fsdp.py calls it)."""
    import accelerate
    from accelerate import state, utils

    partial, acc = getattr(state, "PartialState", None), getattr(state, "AcceleratorState", None)
    dist_type = getattr(utils, "DistributedType", None)
    missing = [what for what, ok in [
        ("accelerate.state.PartialState._shared_state (a dict)",
         isinstance(getattr(partial, "_shared_state", None), dict)),
        ("AcceleratorState(..., _from_accelerator=)",
         acc is not None and "_from_accelerator" in inspect.signature(acc.__init__).parameters),
        ("AcceleratorState.initialized", isinstance(getattr(acc, "initialized", None), property)),
        ("accelerate.utils.DistributedType.FSDP", hasattr(dist_type, "FSDP")),
        ("accelerate.utils.FullyShardedDataParallelPlugin", hasattr(utils, "FullyShardedDataParallelPlugin")),
        ("accelerate.utils.TorchDynamoPlugin", hasattr(utils, "TorchDynamoPlugin")),
    ] if not ok]
    if missing:
        raise RuntimeError(
            f"accelerate {accelerate.__version__} no longer has {'; '.join(missing)}, which "
            f"lib.train.fsdp.enable_fsdp_on_cpu writes (checked against accelerate {ACCELERATE_CHECKED}): "
            "see whether accelerate now turns FSDP on for MULTI_CPU itself (then delete the workaround), "
            "else adapt enable_fsdp_on_cpu to the new names")


def enable_fsdp_on_cpu(args) -> None:
    """Before Trainer is built: make accelerate's shared state FSDP with the plugin Trainer
    would build from `args` (TrainingArguments with fsdp on). Trainer's Accelerator then reuses
    that state. PartialState is marked too: every AcceleratorState() re-reads it. On GPUs
    accelerate does all this by itself; call this on CPU only."""
    check_accelerate_internals()
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin, TorchDynamoPlugin

    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    state = AcceleratorState(cpu=True, fsdp_plugin=plugin, dynamo_plugin=TorchDynamoPlugin(),
                             _from_accelerator=True)
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
