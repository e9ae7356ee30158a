"""Padding-free packing: no cross-example attention, so each example's loss is unchanged."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lib.train.masking import IGNORE_INDEX, encode_records
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
