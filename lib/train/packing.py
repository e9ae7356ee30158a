"""Padding-free packing (the default) and Alpaca-style per-batch padding (for comparison).

Packing concatenates the examples of a micro-batch into one row of shape [1, total_tokens]
(transformers' own `DataCollatorWithFlattening`), `position_ids` restarting at 0 for each
example and `cu_seq_lens_*` marking the boundaries. Not one position is padding. The first
label of every example is -100, so the last token of one example is never trained to predict
the first token of the next. No attention crosses an example boundary:

* flash-attention's varlen kernel (GPU, `flash_attention_2`) reads the boundaries from
  `cu_seq_lens_*`;
* everywhere else SDPA is swapped for `sdpa_varlen` (`prepare_for_packing`): causal
  attention within each example, no attention across. It picks its kernel per call
  (`varlen_kernel`), and on an accelerator never synchronises the host (no `.tolist()` /
  `.item()` per layer; the boundaries stay on the device, the longest example is the
  collator's `max_length_q`, a Python int computed once per batch):
    - "library": CUDA, fp16/bf16 -> torch's flash-attention varlen kernel
      (`torch.nn.attention.varlen.varlen_attn`, PyTorch >= 2.10), GQA without repeating K/V;
    - "masked":  other accelerators, fp32 or dropout -> one SDPA call with a block-diagonal
      causal mask built on the device from `cu_seq_lens_q`;
    - "loop":    CPU -> one SDPA call per example (exact; the CPU is the host, so reading the
      boundaries costs nothing). Its cost is the sum of the examples' squared lengths.
* attention implementations we cannot swap (eager) pack into rows of at most max_length
  (`PackedRowsCollator`); transformers' mask builder finds the boundaries from the
  `position_ids` resets and builds a dense block-diagonal mask per row.

All need `use_cache=False` in training (a KV cache disables the packed-sequence handling),
set by `prepare_for_packing`. tests/test_train_packing.py proves per-example losses match.
Architectures whose forward takes no `position_ids` (BLOOM's ALiBi) cannot be packed this
way; `supports_packing` says so and training falls back to padding with a printed note.
"""
from __future__ import annotations

import inspect

# a trainer module: its collators subclass these
from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening  # noqa: TID253

from lib.core.masking import IGNORE_INDEX


def base_model(model):
    get = getattr(model, "get_base_model", None)  # peft wrappers
    return get() if callable(get) else model


def supports_packing(model) -> bool:
    m = base_model(model)
    attn = getattr(m.config, "_attn_implementation", None) or "eager"
    return "position_ids" in inspect.signature(m.forward).parameters and attn in (
        "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


VARLEN = "sdpa_varlen"


def library_varlen():
    """torch's varlen flash-attention entry point, or None on a torch without it."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


LIBRARY_DEVICES = ("cuda",)  # devices with torch's flash-attention varlen kernel (tests add "meta")


def varlen_kernel(query, dropout: float) -> str:
    """Which kernel a packed row takes: "library", "masked" or "loop" (see the module docstring)."""
    import torch

    if query.device.type == "cpu":
        return "loop"
    if (query.device.type in LIBRARY_DEVICES and query.dtype in (torch.float16, torch.bfloat16) and not dropout
            and query.shape[-1] <= 256 and library_varlen() is not None):
        return "library"  # the flash kernel: half precision, head dim <= 256, no dropout (varlen_attn has none)
    return "masked"


def sdpa_varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                          cu_seq_lens_q=None, max_length_q=None, **kwargs):
    """Varlen attention: query/key/value are one packed row [1, heads, T, dim] and
    cu_seq_lens_q holds the example boundaries; each example attends causally to itself
    only. Anything else (padded batches, generation) goes to transformers' own SDPA.
    Returns [1, T, heads, dim] as transformers' attention functions do."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if cu_seq_lens_q is None or query.shape[0] != 1 or key.shape[2] != query.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    kernel = varlen_kernel(query, dropout)
    if kernel == "library":
        # varlen_attn wants [T, heads, dim] (a view here) and int32 boundaries (the collator's dtype).
        # An unknown longest example takes the row length: an upper bound the kernel accepts, and
        # reading the true maximum from the device would stall the host in every layer.
        max_len = max_length_q if isinstance(max_length_q, int) else query.shape[2]
        cu = cu_seq_lens_q.to(torch.int32)
        out = library_varlen()(query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1), cu, cu,
                               max_len, max_len, scale=scaling, window_size=(-1, 0), enable_gqa=groups > 1)
        return out.unsqueeze(0), None
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    if kernel == "masked":
        n = query.shape[2]
        pos = torch.arange(n, device=query.device)
        # example index of every position, on the device: position p belongs to example i when
        # cu[i] <= p < cu[i + 1]
        example = torch.searchsorted(cu_seq_lens_q[1:].to(pos.dtype), pos, right=True)
        mask = (example[:, None] == example[None, :]) & (pos[:, None] >= pos[None, :])
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout,
                                                               scale=scaling)
        return out.transpose(1, 2).contiguous(), None
    bounds = cu_seq_lens_q.tolist()  # CPU tensor: a read, not a device synchronisation
    out = torch.cat([torch.nn.functional.scaled_dot_product_attention(
        query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=dropout, scale=scaling, is_causal=True)
        for a, b in zip(bounds, bounds[1:])], dim=2)
    return out.transpose(1, 2).contiguous(), None


def register_varlen_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(VARLEN, sdpa_varlen_attention)
    AttentionMaskInterface.register(VARLEN, sdpa_mask)  # padded batches keep their padding mask


def prepare_for_packing(model) -> str:
    """Make `model` train on packed rows; returns the layout its collator must produce:
    "flash" (flash-attention varlen), "varlen" (SDPA swapped for sdpa_varlen) or "rows"."""
    m = base_model(model)
    # A KV cache disables transformers' packed-sequence detection: examples would attend to each other.
    m.config.use_cache = False
    attn = getattr(m.config, "_attn_implementation", None) or "eager"
    if attn.startswith("flash_attention"):
        return "flash"
    if attn in ("sdpa", VARLEN) and not getattr(m.config, "sliding_window", None):
        register_varlen_attention()
        m.set_attn_implementation(VARLEN)  # the saved config.json is unaffected: it stores no implementation
        return "varlen"
    return "rows"


class PackedRowsCollator:
    """Packing for SDPA/eager attention: first-fit-decreasing the batch's examples into rows of
    at most `row_tokens`, position_ids restarting at 0 for every example.

    With SDPA (CPU, or GPU without flash-attention) transformers turns position_ids resets
    into a dense block-diagonal mask, whose cost grows with the square of the row length: one
    row holding a whole batch would spend more on masked-out attention than padding wastes.
    Rows no longer than max_length keep attention at most max_length^2 per row while nearly
    every position holds a real token. Each row ends in a pad run numbered as a sequence of
    its own (labels -100), so it attends to nothing real and nothing real attends to it.
    """

    def __init__(self, pad_token_id: int, row_tokens: int):
        self.pad, self.row_tokens = pad_token_id, row_tokens

    def __call__(self, features):
        import torch

        lengths = [len(f["input_ids"]) for f in features]
        rows: list[list[int]] = []
        room: list[int] = []
        for i in sorted(range(len(features)), key=lambda i: -lengths[i]):
            for r, left in enumerate(room):
                if lengths[i] <= left:
                    rows[r].append(i)
                    room[r] -= lengths[i]
                    break
            else:
                rows.append([i])
                room.append(max(self.row_tokens, lengths[i]) - lengths[i])
        width = max(sum(lengths[i] for i in row) for row in rows)
        ids, labels, pos = [], [], []
        for row in rows:
            r_ids, r_lab, r_pos = [], [], []
            for i in row:
                f = features[i]
                r_ids += list(f["input_ids"])
                r_lab += [IGNORE_INDEX] + list(f["labels"][1:])  # never learn across a boundary
                r_pos += list(range(lengths[i]))
            k = width - len(r_ids)
            ids.append(r_ids + [self.pad] * k)
            labels.append(r_lab + [IGNORE_INDEX] * k)
            pos.append(r_pos + list(range(k)))
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "position_ids": torch.tensor(pos)}


def make_collator(tokenizer, *, packing: bool, layout: str = "varlen", row_tokens: int | None = None):
    """packing, layout "flash" or "varlen" (what prepare_for_packing returned): the whole
    micro-batch in one row with cu_seq_lens. Layout "rows": rows of at most row_tokens
    (PackedRowsCollator), or one row without cu_seq_lens when row_tokens is None. No packing:
    Alpaca's per-batch padding."""
    if packing and layout == "rows" and row_tokens:
        return PackedRowsCollator(tokenizer.pad_token_id, row_tokens)
    if packing:
        return DataCollatorWithFlattening(return_flash_attn_kwargs=layout in ("flash", "varlen"),
                                          separator_id=IGNORE_INDEX)
    # Alpaca's recipe: pad each batch to its longest example; padded labels are -100.
    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX,
                                  return_tensors="pt")


class TokenMeter:
    """Counts what the collator hands the model: positions computed vs useful (real) tokens."""

    def __init__(self):
        self.positions = 0  # every position the model computes, padding included
        self.useful = 0  # real tokens
        self.labels = 0  # tokens that carry a loss
        self.sq_lengths = 0  # sum of example length^2 (attention FLOPs)

    def snapshot(self) -> tuple[int, int, int, int]:
        return self.positions, self.useful, self.labels, self.sq_lengths


class MeteredCollator:
    """Wraps a collator and counts tokens into a TokenMeter (collators run in the main process)."""

    def __init__(self, inner, meter: TokenMeter):
        self.inner, self.meter = inner, meter

    def __call__(self, features):
        lengths = [len(f["input_ids"]) for f in features]  # the rows collator has its own
        batch = self.inner(features)
        self.meter.positions += int(batch["input_ids"].numel())
        self.meter.useful += sum(lengths)
        self.meter.labels += int((batch["labels"] != IGNORE_INDEX).sum())
        self.meter.sq_lengths += sum(n * n for n in lengths)
        return batch
