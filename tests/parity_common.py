"""What the peer-parity tests share: the reference data in ../shared/data and the tokenizers.

The data is real and outside the project: the 175 Self-Instruct seed tasks, text-davinci-003's
answers to the 252 user-oriented instructions, the first 2,000 records of
bench_instructions.jsonl, and FastChat's 500 dummy ShareGPT conversations. In CI the folder
must be there: a missing one fails the tests instead of skipping them.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache

import pytest

from conftest import SHARED_DATA
from train_tokenizers import SP_KINDS, sp_kind

# The tokenizers every parity test runs on: the real LLaMA-format SentencePiece model four
# ways (tests/train_tokenizers.py) and the embedded SmolLM2 (GPT-2-style byte BPE).
TOKENIZERS = SP_KINDS + ("smollm2",)


def data_file(name: str):
    path = SHARED_DATA / name
    if not path.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing: CI must have ../shared/data beside the checkout")
        pytest.skip(f"{path} is absent: the reference data sits beside the checkout in CI")
    return path


def _jsonl(name: str) -> list[dict]:
    with open(data_file(name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@lru_cache(maxsize=None)
def alpaca_records() -> tuple[dict, ...]:
    """Alpaca-style {instruction, input, output} records from three real sources, bytes untouched."""
    out = []
    for r in _jsonl("selfinstruct_seed_tasks.jsonl"):
        inst = r["instances"][0]
        out.append({"id": r["id"], "instruction": r["instruction"], "input": inst["input"], "output": inst["output"]})
    for i, r in enumerate(_jsonl("selfinstruct_text-davinci-003_predictions.jsonl")):
        out.append({"id": f"davinci-{i}", "instruction": r["instruction"], "input": r["input"], "output": r["response"]})
    for i, r in enumerate(_jsonl("bench_instructions.jsonl")[:2000]):
        out.append({"id": f"bench-{i}", "instruction": r["instruction"], "input": r["input"], "output": r["output"]})
    return tuple(out)


@lru_cache(maxsize=None)
def conversations() -> tuple[dict, ...]:
    with open(data_file("fastchat_dummy_conversation.json"), encoding="utf-8") as f:
        return tuple(json.load(f))


@lru_cache(maxsize=None)
def tokenizer(kind: str):
    if kind == "smollm2":
        from transformers import AutoTokenizer

        from lib.core.model import embedded_model_dir

        return AutoTokenizer.from_pretrained(embedded_model_dir())
    return sp_kind(kind)
