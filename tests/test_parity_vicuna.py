"""Peer parity with FastChat: our Vicuna v1.1 examples against FastChat's own `preprocess`.

FastChat is the installed `fschat==0.2.36` (Makefile, --no-deps): its `conversation`
templates are imported as they are, and `preprocess` is taken from its train/train.py
source and run unchanged. Importing that module whole pulls in the trainer and the model
adapters (35 s on 2 cores), so the function is compiled from its own source file with the
three names it uses: `get_conversation_template("vicuna")` -- which FastChat's
VicunaAdapter answers with `get_conv_template("vicuna_v1.1")` -- `SeparatorStyle` and
`rank0_print` (its warnings are collected here). The tokenizer is set up as FastChat's
train() does: pad = unk, right padding, model_max_length 2048 (Vicuna's).

Expected: identical ids and labels wherever FastChat is right. Named differences:

* fastchat_mismatch: FastChat counts tokens per turn with LLaMA-specific offsets (a BOS it
  assumes, "-2" for the space after "ASSISTANT:", "-1" for turns after </s> in non-legacy
  mode). Where a tokenizer breaks those assumptions its check prints "tokenization
  mismatch" and zeroes the WHOLE conversation's labels. Ours labels it from the one
  tokenization and the verified prompt prefixes.
* eos_truncated: longer than 2048 tokens; FastChat's truncation cuts the last answer with
  no EOS, ours keeps EOS.
* fastchat_literal_eos: FastChat writes the separator "</s>" as text whatever the
  tokenizer's EOS is. With SmolLM2 (EOS "<|im_end|>") the model would be trained to write
  the characters "</s>" and never its real EOS, so it could not stop; ours ends every answer
  with the tokenizer's EOS, as inference expects.
"""
from __future__ import annotations

import ast
import copy
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest

from lib.core.masking import IGNORE_INDEX, MaskingError, encode_record
from lib.core.formats import VICUNA_V1_1
from parity_common import TOKENIZERS, conversations, tokenizer

MAX_LENGTH = 2048  # Vicuna's model_max_length


@lru_cache(maxsize=None)
def fastchat_preprocess():
    """FastChat's `preprocess` from its installed source, and the list its warnings go to."""
    import fastchat
    import torch
    import transformers
    from fastchat.conversation import SeparatorStyle, get_conv_template

    path = Path(fastchat.__file__).parent / "train" / "train.py"
    source = path.read_text(encoding="utf-8")
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "preprocess")
    warnings: list[str] = []
    namespace = {"torch": torch, "transformers": transformers, "Dict": dict, "IGNORE_TOKEN_ID": IGNORE_INDEX,
                 "SeparatorStyle": SeparatorStyle, "rank0_print": warnings.append,
                 "get_conversation_template": lambda name: get_conv_template("vicuna_v1.1")}
    exec(compile(ast.Module([node], []), str(path), "exec"), namespace)
    return namespace["preprocess"], warnings


def fastchat_tokenizer(kind: str):
    tok = copy.deepcopy(tokenizer(kind))
    tok.pad_token = tok.unk_token  # FastChat's train(): pad with unk
    tok.padding_side = "right"
    tok.model_max_length = MAX_LENGTH
    if not hasattr(tok, "legacy"):
        # SmolLM2's GPT-2-style tokenizer has no legacy flag; FastChat reads it for every
        # turn after the first. True = no "-1" correction (nothing special after </s>).
        tok.legacy = True
    return tok


def fastchat_examples(kind: str, convs) -> tuple[list[dict], list[str]]:
    preprocess, warnings = fastchat_preprocess()
    tok = fastchat_tokenizer(kind)
    before = len(warnings)
    out = preprocess([c["conversations"] for c in convs], tok)
    examples = []
    for ids, labels, mask in zip(out["input_ids"], out["labels"], out["attention_mask"]):
        n = int(mask.sum())
        examples.append({"input_ids": ids[:n].tolist(), "labels": labels[:n].tolist()})
    return examples, warnings[before:]


def classify(tok, ours: dict | None, theirs: dict, answers: int) -> str:
    if ours == theirs:
        return "agree"
    if ours is None:
        return "UNEXPLAINED"
    if tok.eos_token != "</s>":
        assert tok.eos_token_id not in theirs["input_ids"] and "</s>" in tok.decode(theirs["input_ids"])
        assert ours["input_ids"].count(tok.eos_token_id) == answers
        return "fastchat_literal_eos"
    if all(t == IGNORE_INDEX for t in theirs["labels"]) and ours["input_ids"] == theirs["input_ids"]:
        return "fastchat_mismatch"
    if len(theirs["input_ids"]) == MAX_LENGTH and theirs["input_ids"][-1] != tok.eos_token_id:
        assert ours["input_ids"][:-1] == theirs["input_ids"][:-1] and ours["input_ids"][-1] == tok.eos_token_id
        return "eos_truncated"
    return "UNEXPLAINED"


def trained(labels):
    return sum(t != IGNORE_INDEX for t in labels)


@pytest.mark.parametrize("kind", TOKENIZERS)
def test_vicuna_ids_and_labels_match_fastchat(kind):
    convs = conversations()
    tok = tokenizer(kind)
    theirs, warnings = fastchat_examples(kind, convs)
    counts: Counter = Counter()
    same_tokens = our_tokens = 0
    for conv, th in zip(convs, theirs):
        try:
            ours = encode_record(conv, tok, "vicuna_v1.1", MAX_LENGTH)[0]
        except MaskingError:
            ours = None
        cls = classify(tok, ours, th, sum(c["from"] == "gpt" for c in conv["conversations"]))
        counts[cls] += 1
        if ours is not None:
            our_tokens += trained(ours["labels"])
            same_tokens += sum(a == b != IGNORE_INDEX for a, b in zip(ours["labels"], th["labels"]))
    print(f"vicuna parity {kind}: {counts['agree']}/{len(convs)} conversations identical; "
          f"{same_tokens}/{our_tokens} of our trained tokens trained by FastChat too; {dict(counts)}; "
          f"FastChat mismatch warnings: {len(warnings)}")
    assert counts["UNEXPLAINED"] == 0, dict(counts)
    if not counts["fastchat_literal_eos"]:
        # Every conversation FastChat zeroed is one its own check flagged, and only those.
        assert counts["fastchat_mismatch"] == sum("tokenization mismatch" in w for w in warnings)
    if kind in ("sp_legacy", "fast_legacy", "fast"):
        # The tokenizers FastChat's offsets were written for: token for token the same.
        assert counts["agree"] == len(convs), dict(counts)


def test_fastchat_mismatch_zeroes_what_we_train():
    """transformers' SentencePieceBackend in non-legacy mode drops the dummy "▁" even at the
    start of a turn, so FastChat's "-1 after </s>" correction overshoots: its check flags the
    conversation and zeroes every label. Ours trains exactly each answer + EOS there."""
    tok = tokenizer("sp")
    conv = next(c for c in conversations() if len(c["conversations"]) > 2)
    (theirs,), warnings = fastchat_examples("sp", [conv])
    assert warnings and "tokenization mismatch" in warnings[0] and trained(theirs["labels"]) == 0
    ours, _ = encode_record(conv, tok, "vicuna_v1.1", MAX_LENGTH)
    assert ours["input_ids"] == theirs["input_ids"]
    runs, cur = [], []
    for lab in ours["labels"] + [IGNORE_INDEX]:
        if lab == IGNORE_INDEX and cur:
            runs.append(cur)
            cur = []
        elif lab != IGNORE_INDEX:
            cur.append(lab)
    answers = [c["value"] for c in conv["conversations"] if c["from"] == "gpt"]
    # Each run is " " + answer (the space after "ASSISTANT:" belongs to the answer), then EOS.
    assert [tok.sp_model.decode(r[:-1]) for r in runs] == [" " + a for a in answers]
    assert all(r[-1] == tok.eos_token_id for r in runs)


def test_our_string_is_fastchats_string():
    from fastchat.conversation import get_conv_template

    for conv in conversations()[:50]:
        fc = get_conv_template("vicuna_v1.1")
        msgs = []
        for c in conv["conversations"]:
            role = {"human": "user", "gpt": "assistant"}[c["from"]]
            fc.append_message(fc.roles[role == "assistant"], c["value"])
            msgs.append({"role": role, "content": c["value"]})
        assert VICUNA_V1_1.render(msgs, "</s>") == fc.get_prompt()
        # The open prompt for the last answer is FastChat's generation prompt too.
        fc.messages[-1][1] = None
        assert VICUNA_V1_1.render(msgs[:-1], "</s>") == fc.get_prompt()


# ------------------------------------------------------------ conversations FastChat's cleaner drops
# fschat 0.2.36's data/clean_sharegpt.py `clean_html_one_sample` drops some conversations that the
# project keeps, each on purpose (docs/fidelity.md):
# - starts with the assistant: FastChat cuts the first turn only (and drops what is then too short);
#   ours cuts every leading assistant turn and keeps the exchanges that remain;
# - too short: FastChat drops a conversation under 16 characters in all; ours keeps a short valid
#   exchange ("Hi" -> "Hello!"), as Alpaca keeps one-word answers (drop_short drops empty ones);
# - blocked words: FastChat drops any conversation that mentions "openai" or "chatgpt", a user's
#   question about them included; ours drops a reply that claims to be the teacher (drop_identity).
FASTCHAT_DROPS = {
    "starts with the assistant": ([("gpt", "Hello! How can I help?"), ("gpt", "Anything else?"),
                                   ("human", "Name a primary colour, please."), ("gpt", "Red is a primary colour.")],
                                  "kept"),
    "too short": ([("human", "Hi"), ("gpt", "Hello!")], "kept"),
    "blocked word in the question": ([("human", "What is ChatGPT, in one sentence?"),
                                      ("gpt", "It is a chat assistant built on a large language model.")], "kept"),
    "blocked word as identity": ([("human", "Who are you?"),
                                  ("gpt", "I am ChatGPT, a large language model trained by OpenAI.")], "dropped"),
}


def test_conversations_fastchat_drops_are_kept_or_dropped_on_purpose():
    from fastchat.data.clean_sharegpt import clean_html_one_sample

    from lib.clean.filters import CleanConfig
    from lib.clean.pipeline import clean_records

    counts = Counter()
    for name, (turns, ours_want) in FASTCHAT_DROPS.items():
        conv = {"id": name, "conversations": [{"from": f, "value": v} for f, v in turns]}
        _, code = clean_html_one_sample(copy.deepcopy(conv))
        assert code != 0, (name, "FastChat keeps it: the class is no longer a difference")
        cfg = CleanConfig(format="sharegpt", drop_wrong_language=False, drop_near_duplicates=False,
                          drop_low_diversity_sources=False)
        kept = clean_records([conv], cfg, fmt="sharegpt", progress=False).records
        assert ("kept" if kept else "dropped") == ours_want, (name, kept)
        counts[ours_want] += 1
    print(f"FastChat drops {len(FASTCHAT_DROPS)} classes; ours: {dict(counts)}")
    assert counts == {"kept": 3, "dropped": 1}
