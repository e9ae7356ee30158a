"""The Chinese path end to end, tiny on CPU: extend LLaMA's vocabulary, resize, continued
pretraining (stage 1: new rows only, in process; stage 2: LoRA + embeddings, through papermill
from notebooks/), then BELLE-style SFT on the extended model, through papermill.

The tiny base is a random 2-layer LLaMA carrying the real 32K LLaMA-format SentencePiece
tokenizer; it stands in for huggyllama/llama-7b only through the explicit `model=` override.
"""
from __future__ import annotations

import json
import subprocess
import sys

import papermill as pm
import pytest
import torch

from lib.core.paths import REPO
from lib.train.vocab import extend_tokenizer, load_sentencepiece_tokenizer
from tests.zh_corpus import llama_model_dir, write_jsonl, zh_split

NOTEBOOKS = REPO / "notebooks"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    from safetensors.torch import load_file

    from lib.train.sft import TrainConfig, train
    from lib.train.tiny import tiny_model

    root = tmp_path_factory.mktemp("zh")
    train_docs, held = zh_split(n_train=1200, n_held=40)
    # The tiny base: random weights, LLaMA's real tokenizer.
    base = root / "base"
    tok = load_sentencepiece_tokenizer(llama_model_dir())
    tiny_model("llama", tok, seed=0).save_pretrained(base)
    tok.save_pretrained(base)
    info = extend_tokenizer(base / "tokenizer.model" if (base / "tokenizer.model").exists() else llama_model_dir(),
                            train_docs, root / "tok", new_vocab=3000)
    r = subprocess.run([sys.executable, "-m", "lib.train.vocab", "resize", "--model", str(base), "--tokenizer",
                        str(root / "tok"), "--out", str(root / "base_zh")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # Stage 1 in process: only the appended rows may move.
    corpus = write_jsonl(root / "corpus.jsonl", train_docs[:200])
    stage1 = train(TrainConfig(recipe="chinese_llama_pt_embed", data=str(corpus), output_dir=str(root / "stage1"),
                               model=str(root / "base_zh"), max_steps=3, per_device_batch=2, grad_accum=1,
                               max_length=64, learning_rate=1e-2))
    before = load_file(root / "base_zh" / "model.safetensors")
    after = load_file(root / "stage1" / "model.safetensors")
    # Stage 2 and SFT through papermill, from notebooks/ as `make lab` runs them.
    run_pt = root / "run_pt"
    (run_pt / "data").mkdir(parents=True)
    write_jsonl(run_pt / "data" / "clean.jsonl", train_docs[200:600] + held)
    pm.execute_notebook(str(NOTEBOOKS / "03_train.ipynb"), str(run_pt / "03_train.ipynb"), kernel_name="python3",
                        cwd=str(NOTEBOOKS), progress_bar=False,
                        parameters={"run_dir": str(run_pt), "recipe": "chinese_llama_pt", "model": str(root / "stage1"),
                                    "max_steps": 6, "per_device_batch": 4, "grad_accum": 1, "max_length": 64,
                                    "learning_rate": 5e-3})
    run_sft = root / "run_sft"
    (run_sft / "data").mkdir(parents=True)
    seeds = [json.loads(x) for x in (REPO / "lib" / "data" / "seed_tasks.jsonl").read_text(encoding="utf-8").splitlines()]
    zh = [s for s in seeds if s["id"].startswith("zh") or any("\u4e00" <= c <= "\u9fff" for c in s["instruction"])]
    with open(run_sft / "data" / "clean.jsonl", "w", encoding="utf-8") as f:
        for i in range(24):
            s = zh[i % len(zh)]
            f.write(json.dumps({"id": f"z{i}", "instruction": s["instruction"], "input": s["instances"][0]["input"],
                                "output": s["instances"][0]["output"]}, ensure_ascii=False) + "\n")
    pm.execute_notebook(str(NOTEBOOKS / "03_train.ipynb"), str(run_sft / "03_train.ipynb"), kernel_name="python3",
                        cwd=str(NOTEBOOKS), progress_bar=False,
                        parameters={"run_dir": str(run_sft), "recipe": "belle_zh", "model": str(run_pt / "model"),
                                    "max_steps": 2, "per_device_batch": 2, "grad_accum": 1, "max_length": 96})
    return dict(info=info, stage1=stage1, before=before, after=after, run_pt=run_pt, run_sft=run_sft, root=root)


def test_stage_one_moves_only_the_new_embedding_rows(chain):
    before, after, n_old = chain["before"], chain["after"], chain["info"]["first_new_id"]
    assert set(before) == set(after)
    for name, w in before.items():
        if "embed_tokens" in name or "lm_head" in name:
            assert torch.equal(after[name][:n_old], w[:n_old]), name
            assert not torch.equal(after[name][n_old:], w[n_old:]), name
        else:
            assert torch.equal(after[name], w), name


def test_continued_pretraining_trains_every_token_of_fixed_blocks(chain):
    m = json.loads((chain["run_pt"] / "train" / "metrics.json").read_text())
    assert m["recipe"] == "chinese_llama_pt" and m["format"] == "text" and m["global_step"] == 6
    blocks = m["masking"]
    assert blocks["blocks"] == m["train_examples"] and blocks["dropped_tail"] < 64
    assert m["tuned_heldout_loss"] < m["base_heldout_loss"]
    tok = load_sentencepiece_tokenizer(chain["root"] / "tok")
    saved = json.loads((chain["run_pt"] / "model" / "config.json").read_text())
    assert saved["vocab_size"] == len(tok) == chain["info"]["size"]


def test_belle_sft_runs_on_the_extended_tokenizer(chain):
    from transformers import AutoTokenizer

    from lib.core.masking import alpaca_messages, encode_record, prompt_ids

    m = json.loads((chain["run_sft"] / "train" / "metrics.json").read_text())
    assert m["recipe"] == "belle_zh" and m["global_step"] == 2 and m["masking"]["kept"] > 0
    tok = AutoTokenizer.from_pretrained(chain["run_sft"] / "model")
    assert len(tok) == chain["info"]["size"]
    rec = {"instruction": "写一首关于春天的诗。", "input": "", "output": "春天来了，花开了，我们去公园散步。"}
    ex, _ = encode_record(rec, tok, "alpaca", 256)
    answer = [i for i, lab in zip(ex["input_ids"], ex["labels"]) if lab != -100]
    assert any(i >= chain["info"]["first_new_id"] for i in answer)  # the answer uses the new Chinese tokens
    assert tok.decode(answer, skip_special_tokens=True).strip() == rec["output"]
    # The prefix trained on is, token for token, the prompt inference sends (lib.core.formats).
    prompt = prompt_ids("alpaca", alpaca_messages(rec)[:-1], tok)
    assert ex["input_ids"][:len(prompt)] == prompt and ex["labels"][len(prompt) - 1] == -100
    assert ex["labels"][len(prompt)] != -100


def test_the_vocabulary_record_survives_both_stages(chain):
    """`resize` records the base vocabulary in config.json; the trainer's saved models keep it, so
    the check before continued pretraining (check_extended_vocab) holds at every stage."""
    from transformers import AutoConfig, AutoTokenizer

    from lib.train.vocab import VOCAB_RECORD, check_extended_vocab

    for d, first_new_id in ((chain["root"] / "base_zh", 32000), (chain["root"] / "stage1", 32000),
                            (chain["run_pt"] / "model", 0)):
        config = AutoConfig.from_pretrained(d)
        assert getattr(config, VOCAB_RECORD)["base_vocab_size"] == 32000, d
        check_extended_vocab(AutoTokenizer.from_pretrained(d), config, first_new_id)


def test_every_trained_model_keeps_the_sentencepiece_model(chain):
    """llama.cpp's GGUF converter reads piece scores from tokenizer.model: every model the trainer
    publishes (stage 1, stage 2, the SFT on top) carries the extended one, byte for byte."""
    extended = (chain["root"] / "tok" / "tokenizer.model").read_bytes()
    for d in (chain["root"] / "stage1", chain["run_pt"] / "model", chain["run_sft"] / "model"):
        assert (d / "tokenizer.model").read_bytes() == extended, d
