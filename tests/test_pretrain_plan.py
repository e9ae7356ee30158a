"""`python -m lib.launch sky/pretrain_zh.yaml --dry-run`: a hand-checkable plan for a stated corpus
size (the task's TRAIN_TOKENS) and for a real corpus counted with LLaMA's tokenizer."""
from __future__ import annotations

import math

import pytest
import yaml

from sky_catalog import seeded_home
from launch_driver import launch_many
from tests.test_launch_plan import number, speed_by_hand
from tests.zh_corpus import llama_model_dir, write_jsonl, zh_split

from lib.core.paths import REPO
from lib.train.recipes import load_recipe


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("zh-plan")
    env = seeded_home(root / "home")
    docs, _ = zh_split(n_train=400, n_held=0)
    corpus = write_jsonl(root / "corpus.jsonl", docs)
    from lib.train.vocab import load_sentencepiece_tokenizer

    load_sentencepiece_tokenizer(llama_model_dir()).save_pretrained(root / "llama-tok")  # with its BOS setting
    calls = {"stated": ["sky/pretrain_zh.yaml", "--dry-run"],
             "counted": ["sky/pretrain_zh.yaml", "--dry-run", "--data", str(corpus), "--tokenizer",
                         str(root / "llama-tok")]}
    return corpus, launch_many(calls, env), root / "llama-tok"


def test_plan_for_the_stated_corpus_size(out):
    _, res, _ = out
    text = res["stated"]["stdout"]
    assert res["stated"]["code"] == 0, res["stated"]["stderr"]
    task = yaml.safe_load((REPO / "sky" / "pretrain_zh.yaml").read_text())
    tokens = int(task["envs"]["TRAIN_TOKENS"])
    blocks = int(tokens * 0.9) // 512  # less the 10% of documents 03_train holds out
    steps = math.ceil(blocks / (32 * 4 * 8))  # the recipe's 32 per device x 4 accumulation x 8 GPUs
    assert "model:     huggyllama/llama-7b (recipe chinese_llama_pt; format text, max_length 512" in text
    assert f"= {blocks:,} blocks of 512" in text and f"= {steps:,} optimizer steps" in text
    tps = speed_by_hand(load_recipe("chinese_llama_pt"), "A100-80GB", 512)["expected"]  # blocks of 512: span 512
    overheads = number(r"total:\s+([0-9.]+) h of overheads", text)  # lines of their own (test_launch_plan)
    hours = blocks * 512 / (tps * 8) / 3600 + overheads
    assert number(r"hours:\s+([0-9.]+) h", text) == pytest.approx(hours, abs=0.006)
    hourly = number(r"at \$([0-9.,]+)/h per node", text)
    assert number(r"estimate:\s+\$([0-9,.]+)", text) == pytest.approx(hours * hourly, abs=0.006)


def test_plan_counts_a_real_corpus_with_the_tokenizer(out):
    from lib.train.data import read_training_records as read_jsonl, split_heldout
    from lib.train.text import document_ids
    from transformers import AutoTokenizer

    corpus, res, tok_dir = out
    text = res["counted"]["stdout"]
    assert res["counted"]["code"] == 0, res["counted"]["stderr"]
    tok = AutoTokenizer.from_pretrained(tok_dir)
    train, _ = split_heldout(read_jsonl(corpus), 0.1, seed=42)  # as 03_train holds out
    blocks = sum(len(document_ids(r["text"], tok)) for r in train) // 512
    assert f"= {blocks:,} examples, {blocks * 512:,} tokens per epoch [tokenizer" in text and "ESTIMATE" not in text
