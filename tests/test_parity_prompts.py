"""The prompt a model trains on is, token for token, the prompt it is served.

For every recipe format (alpaca, vicuna_v1.1, chat) and every answer of every example, the
ids before that answer in the training example equal `prompt_ids(fmt, conversation so far)`
-- the ids evaluation sends (`lib.evaluate.answers.generate_batch` calls exactly this
function) and serving renders with `render_prompt` -- and the first labelled token is the
one right after them. Checked on real data (../shared/data) with the real LLaMA-format
SentencePiece model (transformers' LlamaTokenizer non-legacy, and the `sentencepiece`
library in legacy mode) and with SmolLM2's tokenizer. Examples whose boundary a token
straddles are not trained on; they must be reported as "boundary merge", and be few.
"""
from __future__ import annotations

import pytest

import lib.evaluate.answers as answers
from lib.core.masking import IGNORE_INDEX, MaskingError, alpaca_messages, encode_record, prompt_ids, record_messages
from parity_common import alpaca_records, conversations, tokenizer

KINDS = ("fast", "sp_legacy", "smollm2")
FORMATS = ("alpaca", "vicuna_v1.1", "chat")
N = 150  # examples per (tokenizer, format): every answer of each is checked


def examples(fmt: str) -> list[tuple[dict, list[dict]]]:
    if fmt == "alpaca":
        recs = alpaca_records()[:N // 3] + alpaca_records()[175:175 + N // 3] + alpaca_records()[427:427 + N // 3]
        return [(r, alpaca_messages(r)) for r in recs]
    return [(c, record_messages(c)) for c in conversations()[:N]]


def test_evaluation_sends_the_training_prompt_ids():
    assert answers.prompt_ids is prompt_ids


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_training_prefix_is_the_inference_prompt(kind, fmt):
    tok = tokenizer(kind)
    checked = merges = 0
    for rec, messages in examples(fmt):
        try:
            ex, truncated = encode_record(rec, tok, fmt, 4096)
        except MaskingError as e:
            assert str(e).startswith("boundary merge"), str(e)
            merges += 1
            continue
        assert not truncated
        ids, labels = ex["input_ids"], ex["labels"]
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prompt = prompt_ids(fmt, messages[:i], tok)
            assert ids[: len(prompt)] == prompt, (kind, fmt, rec.get("id"), i)
            # The answer is trained from the very next token; the prompt's own last token never is.
            assert labels[len(prompt) - 1] == IGNORE_INDEX and labels[len(prompt)] == ids[len(prompt)]
            checked += 1
    print(f"prefix parity {kind} {fmt}: {checked} answers checked, {merges} boundary merges reported")
    assert checked >= 0.95 * N and merges <= 0.05 * N
