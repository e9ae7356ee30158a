"""The four ways one extended SentencePiece vocabulary is applied between training and serving,
and the held-out text they must agree on (tests/test_train_vocab.py, bench/bench_vocab_agreement.py).

1. "sentencepiece": the `sentencepiece` library on the tokenizer.model itself;
2. "slow": transformers' SentencePiece-backed class (`SentencePieceBackend`: transformers 5 has no
   slow LlamaTokenizer any more), in its legacy mode, which is LLaMA's slow tokenizer on text
   without special tokens (its non-legacy mode drops the dummy prefix altogether);
3. "fast": `AutoTokenizer` on the checkpoint, the tokenizer.json training loads;
4. "gguf": llama.cpp's tokenizer on the GGUF that lib.serve.export's converter makes from a tiny
   LLaMA resized for the tokenizer by `lib.train.vocab.resize_checkpoint` (vocab-only load).
"""
from __future__ import annotations

from pathlib import Path

from lib.core.paths import REPO
from lib.serve.export import convert_f16
from lib.train.tiny import tiny_model
from lib.train.vocab import CJK, TOKENIZER_FILE, load_sentencepiece_tokenizer, resize_checkpoint
from tests.train_tokenizers import sp_backend
from tests.zh_corpus import en_texts, llama_model_dir

WAYS = ("sentencepiece", "slow", "fast", "gguf")


def resized_gguf(tokenizer_dir: Path, root: Path) -> tuple[Path, Path]:
    """(resized checkpoint, its 16-bit GGUF): a tiny random LLaMA with LLaMA's 32K tokenizer,
    resized for `tokenizer_dir` and converted by llama.cpp's own converter."""
    base = root / "base"
    tok = load_sentencepiece_tokenizer(llama_model_dir())
    tiny_model("llama", tok, seed=0).save_pretrained(base)
    tok.save_pretrained(base)
    (base / TOKENIZER_FILE).write_bytes((llama_model_dir() / TOKENIZER_FILE).read_bytes())
    ckpt = resize_checkpoint(base, tokenizer_dir, root / "resized")["model"]
    return Path(ckpt), convert_f16(ckpt, root / "resized.F16.gguf", log=root / "convert.log")


def tokenizers_of(checkpoint: Path, gguf: Path):
    """({way: text -> ids without BOS/EOS}, the llama.cpp model to close() after)."""
    import sentencepiece as spm
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    model_file = str(checkpoint / TOKENIZER_FILE)
    sp = spm.SentencePieceProcessor(model_file=model_file)
    slow = sp_backend(model_file, legacy=True)
    fast = AutoTokenizer.from_pretrained(checkpoint)
    llm = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    ways = {"sentencepiece": sp.encode, "slow": lambda t: slow(t, add_special_tokens=False)["input_ids"],
            "fast": lambda t: fast(t, add_special_tokens=False)["input_ids"],
            "gguf": lambda t: llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)}
    return ways, llm


def held_out_texts(held_zh: list[str]) -> dict[str, list[str]]:
    """Chinese (reviews the extension never saw), English (the project's own questions and seeds,
    and the paragraphs of its README: prose, tables, indented code) and mixed documents."""
    readme = [p for p in (REPO / "README.md").read_text(encoding="utf-8").split("\n\n") if p.strip()]
    en = en_texts() + readme
    latin = [t for t in held_zh if any("a" <= c.lower() <= "z" for c in t)]
    mixed = latin + [f"{zh} {e}" for zh, e in zip(held_zh, en)] + [f"{e}\n{zh}" for zh, e in zip(held_zh, en[::-1])]
    assert all(CJK.search(t) for t in held_zh + mixed) and not any(CJK.search(t) for t in en_texts())
    return {"zh": held_zh, "en": en, "mixed": mixed}


def disagreements(ways: dict, texts: list[str]) -> dict[str, list[str]]:
    """way -> the documents on which it gives other ids than the `sentencepiece` library."""
    ref = {t: ways["sentencepiece"](t) for t in texts}
    return {w: [t for t in texts if f(t) != ref[t]] for w, f in ways.items() if w != "sentencepiece"}
