"""Padding-free packing: no cross-example attention, so each example's loss is unchanged."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lib.core.masking import IGNORE_INDEX, encode_records
from lib.train.packing import MeteredCollator, TokenMeter, make_collator, prepare_for_packing, supports_packing
from lib.train.tiny import tiny_model

RECORDS = [
    {"instruction": "Say hi", "output": "Hello there, friend!"},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "The sum is 5, because two plus three is five."},
    {"instruction": "写一首关于春天的短诗。", "output": "春眠不觉晓，处处闻啼鸟。"},
]


@pytest.fixture(scope="module")
def tok(embedded_model):
    return AutoTokenizer.from_pretrained(embedded_model)


@pytest.fixture(scope="module")
def examples(tok):
    ex, _ = encode_records(RECORDS, tok, fmt="alpaca", max_length=256)
    assert len(ex) == 3
    return ex


def per_example_losses(model, batch, lengths):
    """Summed token loss of each example: one example per row (padded), or all in row 0 (flat)."""
    batch = dict(batch)
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch, use_cache=False).logits.float()
    flat = labels.shape[0] == 1 and len(lengths) > 1
    out, start = [], 0
    for i, n in enumerate(lengths):
        r, s = (0, start) if flat else (i, 0)
        lg, lb = logits[r, s: s + n - 1], labels[r, s + 1: s + n]
        out.append(torch.nn.functional.cross_entropy(lg, lb, ignore_index=IGNORE_INDEX, reduction="sum").item())
        start += n
    return out


def rows_losses(model, tok, examples, row_tokens):
    """Per-example losses from the bounded-rows packing (several examples per row + pad run)."""
    batch = make_collator(tok, packing=True, layout="rows", row_tokens=row_tokens)(examples)
    assert batch["input_ids"].shape[0] < len(examples)  # really packed: fewer rows than examples
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch, use_cache=False).logits.float()
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=IGNORE_INDEX,
                                           reduction="none")
    out = {}
    for r in range(labels.shape[0]):  # split each row at its position_ids resets
        starts = [i for i, p in enumerate(batch["position_ids"][r].tolist()) if p == 0] + [labels.shape[1]]
        for a, b in zip(starts, starts[1:]):
            ids = batch["input_ids"][r, a:b].tolist()
            for j, e in enumerate(examples):
                if e["input_ids"] == ids:
                    out[j] = ce[r, a:b - 1].sum().item()
    return [out[j] for j in range(len(examples))]


def check_packed_equals_alone(model, tok, examples, layouts=("flat", "rows", "padded")):
    assert supports_packing(model)
    assert prepare_for_packing(model) == "varlen"  # SDPA swapped for per-example SDPA calls
    model.eval()
    lengths = [len(e["input_ids"]) for e in examples]
    packed_batch = make_collator(tok, packing=True)(examples)
    assert packed_batch["input_ids"].shape == (1, sum(lengths))
    alone = [per_example_losses(model, make_collator(tok, packing=False)([e]), [n])[0] for e, n in zip(examples, lengths)]
    assert "cu_seq_lens_q" in packed_batch
    if "flat" in layouts:  # one row, the flash/varlen layout (the default)
        assert per_example_losses(model, packed_batch, lengths) == pytest.approx(alone, rel=1e-4)
    if "rows" in layouts:  # rows of bounded length, the SDPA layout: 2 rows, one ending in padding
        assert rows_losses(model, tok, examples, max(lengths) + min(lengths)) == pytest.approx(alone, rel=1e-4)
    if "padded" in layouts:
        padded = per_example_losses(model, make_collator(tok, packing=False)(examples), lengths)
        assert padded == pytest.approx(alone, rel=1e-4)


def test_packed_losses_match_alone_on_smollm2(embedded_model, tok, examples):
    model = AutoModelForCausalLM.from_pretrained(embedded_model, attn_implementation="sdpa", dtype=torch.float32)
    check_packed_equals_alone(model, tok, examples, layouts=("flat", "rows"))


@pytest.mark.parametrize("family", ["llama", "glm"])
def test_packed_losses_match_alone_on_tiny_models(family, tok, examples):
    check_packed_equals_alone(tiny_model(family, tok, seed=1), tok, examples)


def test_cross_attention_would_change_the_loss(tok, examples):
    # The same packed row without its boundaries (no cu_seq_lens, no position_ids resets)
    # attends across examples: the loss of later examples changes. Proves the equality above
    # is not vacuous.
    model = tiny_model("llama", tok, seed=1)
    prepare_for_packing(model)
    model.eval()
    lengths = [len(e["input_ids"]) for e in examples]
    batch = dict(make_collator(tok, packing=True)(examples))
    leaky = {k: v for k, v in batch.items() if not k.startswith(("cu_seq_lens", "max_length"))}
    leaky["position_ids"] = torch.arange(sum(lengths)).unsqueeze(0)
    sealed = per_example_losses(model, batch, lengths)
    mixed = per_example_losses(model, leaky, lengths)
    assert sealed[0] == pytest.approx(mixed[0], rel=1e-5)
    assert abs(sealed[2] - mixed[2]) > 1e-3


def test_packed_labels_separate_examples_and_keep_eos(tok, examples):
    batch = make_collator(tok, packing=True)(examples)
    starts = [0]
    for e in examples[:-1]:
        starts.append(starts[-1] + len(e["input_ids"]))
    labels = batch["labels"][0].tolist()
    assert all(labels[s] == IGNORE_INDEX for s in starts)  # no example learns the previous one's end
    assert labels.count(tok.eos_token_id) == len(examples)
    assert batch["position_ids"][0].tolist()[starts[1]] == 0


def test_padding_collator_pads_labels_not_eos(tok, examples):
    batch = make_collator(tok, packing=False)(examples)
    assert tok.pad_token_id != tok.eos_token_id
    assert (batch["labels"] == tok.eos_token_id).sum().item() == len(examples)
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_meter_counts_useful_tokens(tok, examples):
    meter = TokenMeter()
    MeteredCollator(make_collator(tok, packing=False), meter)(examples)
    useful = sum(len(e["input_ids"]) for e in examples)
    assert meter.useful == useful and meter.positions == 3 * max(len(e["input_ids"]) for e in examples)
    meter2 = TokenMeter()
    MeteredCollator(make_collator(tok, packing=True), meter2)(examples)
    assert meter2.positions == meter2.useful == useful


def test_varlen_attention_equals_a_block_diagonal_mask_with_grouped_query_heads(tok, examples):
    """sdpa_varlen against transformers' own SDPA with the block-diagonal mask it builds from
    position_ids resets: same logits and same gradients, on a model with 2 KV heads for 4 query heads."""
    ref = tiny_model("llama", tok, seed=2, heads=4)
    var = tiny_model("llama", tok, seed=2, heads=4)
    ref.config.use_cache = False
    assert prepare_for_packing(var) == "varlen" and ref.config._attn_implementation == "sdpa"
    batch = make_collator(tok, packing=True)(examples)
    plain = {k: v for k, v in batch.items() if not k.startswith(("cu_seq_lens", "max_length"))}
    out_ref, out_var = ref(**plain), var(**batch)
    assert torch.allclose(out_ref.logits, out_var.logits, atol=1e-5)
    out_ref.loss.backward()
    out_var.loss.backward()
    for (n, a), (_, b) in zip(ref.named_parameters(), var.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), n


def test_bloom_cannot_pack_by_position_ids(tok):
    assert not supports_packing(tiny_model("bloom", tok))


class _Attn(torch.nn.Module):
    num_key_value_groups = 2  # 4 query heads share 2 KV heads


def _qkv(n=23, heads=4, kv=2, dim=8, device="cpu", dtype=torch.float32, grad=False):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, h, n, dim, generator=g, dtype=dtype).to(device).requires_grad_(grad)
               for h in (heads, kv, kv))
    return q, k, v


def test_device_mask_kernel_equals_the_per_example_loop(monkeypatch):
    """The no-host-sync fallback (block-diagonal causal mask built on the device) computes what the
    CPU loop computes: same outputs, same gradients, grouped query heads included."""
    from lib.train import packing

    cu = torch.tensor([0, 5, 6, 17, 23], dtype=torch.int32)
    results = {}
    for kernel in ("loop", "masked"):
        monkeypatch.setattr(packing, "varlen_kernel", lambda q, d, kernel=kernel: kernel)
        q, k, v = _qkv(grad=True)
        out, _ = packing.sdpa_varlen_attention(_Attn(), q, k, v, None, scaling=0.3, cu_seq_lens_q=cu, max_length_q=11)
        (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
        results[kernel] = (out.detach(), q.grad, k.grad, v.grad)
    assert results["loop"][0].shape == (1, 23, 4, 8)
    for a, b in zip(results["loop"], results["masked"]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_kernel_choice():
    from lib.train.packing import varlen_kernel

    assert varlen_kernel(torch.zeros(1, 2, 4, 8), 0.0) == "loop"  # CPU: the exact per-example loop
    meta = torch.zeros(1, 2, 4, 8, device="meta", dtype=torch.bfloat16)
    assert varlen_kernel(meta, 0.0) == "masked"  # not CUDA: no flash kernel, still no host sync


def test_cuda_path_calls_torchs_varlen_kernel_once_per_layer_without_host_sync(monkeypatch, tok, examples):
    """No GPU here, so the CUDA path runs on the meta device, where torch's varlen_attn has its
    shape-checking fake kernel (forward and backward) and any .tolist()/.item() raises: a whole
    packed forward + backward of a GQA model takes the library kernel in every layer, with the
    collator's host-side max_length_q and never a read of device data. The one host read left is
    transformers' own, once per forward (not per layer): create_causal_mask asks whether
    position_ids hold packed sequences; it is counted here and answered "no mask needed"."""
    import transformers.masking_utils as mu
    from torch.nn.attention.varlen import varlen_attn

    from lib.train import packing

    calls, mask_checks = [], []
    monkeypatch.setattr(mu, "find_packed_sequence_indices", lambda position_ids: mask_checks.append(1))

    def spy(q, k, v, cu_q, cu_k, max_q, max_k, **kw):
        calls.append((q.shape, k.shape, cu_q.dtype, max_q, max_k, kw))
        return varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, **kw)

    monkeypatch.setattr(packing, "LIBRARY_DEVICES", ("cuda", "meta"))
    monkeypatch.setattr(packing, "library_varlen", lambda: spy)
    model = tiny_model("llama", tok, seed=0, heads=4).to(torch.bfloat16)
    assert prepare_for_packing(model) == "varlen"
    model = model.to("meta")
    batch = make_collator(tok, packing=True)(examples)
    lengths = [len(e["input_ids"]) for e in examples]
    assert batch["max_length_q"] == max(lengths) and isinstance(batch["max_length_q"], int)
    batch = {k: v.to("meta") if torch.is_tensor(v) else v for k, v in batch.items()}
    out = model(**batch)
    out.loss.backward()
    cfg = model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    assert len(calls) == cfg.num_hidden_layers > 1 and len(mask_checks) == 1
    for q_shape, k_shape, dtype, max_q, max_k, kw in calls:
        assert q_shape == (sum(lengths), cfg.num_attention_heads, head_dim)
        assert k_shape == (sum(lengths), cfg.num_key_value_heads, head_dim) and cfg.num_key_value_heads < 4
        assert (dtype, max_q, max_k) == (torch.int32, max(lengths), max(lengths))
        assert kw["window_size"] == (-1, 0) and kw["enable_gqa"] is True  # causal, K/V not repeated
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
