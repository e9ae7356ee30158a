"""Chinese vocabulary extension, the Chinese-LLaMA way: new pieces appended, old ids untouched.

LLaMA's 32K SentencePiece vocabulary knows few Chinese characters: most cost 1-3 byte-fallback
tokens each, so Chinese text takes ~1.5-2 tokens per character and every later step (SFT,
inference) pays for it. Chinese-LLaMA trained a SentencePiece model on Chinese text and
appended its pieces to LLaMA's model; we do the same with the `sentencepiece` library:

    python -m lib.train.vocab extend --base tokenizer.model --corpus zh.jsonl --out runs/x/tokenizer
    python -m lib.train.vocab resize --model base_ckpt --tokenizer runs/x/tokenizer --out runs/x/base_zh

Invariants, enforced in `merge_sentencepiece` and tested:
- every existing piece keeps its id, type and score (the model's old rows still mean the same);
- new pieces are appended after the last old id, in the order the Chinese model ranks them;
- only pieces with at least one CJK character are added, so English text tokenizes as before
  (Chinese-LLaMA added every new piece; the CJK rule keeps its English unchanged, by design).
New pieces get score 0, above every old (negative) score, as in Chinese-LLaMA's merge: a
SentencePiece BPE model merges the highest-scoring piece first, so a whole Chinese word wins
over the byte pieces it would otherwise fall back to.

New embedding rows start at the mean of the old sub-token rows of each new token ("subtokens",
the better start, since a new word starts where its old pieces pointed) or at the mean of all
old rows ("mean"). `freeze_old_rows` gives stage 1 of Chinese-LLaMA's two stages: only the new
rows of the embeddings and LM head learn; stage 2 trains everything (or LoRA with the
embeddings trainable).
"""
from __future__ import annotations

import argparse
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path

from lib.core.errors import UserError, cli
from lib.core.files import atomic_write, atomic_write_json, publish_dir
from lib.core.text import CJK
from lib.train.text import document_ids, read_documents

TOKENIZER_FILE = "tokenizer.model"


# ------------------------------------------------------------------------------ tokenizer

def _pb():
    # transformers' own generated copy of SentencePiece's model proto: sentencepiece 0.2.3's is
    # generated for protobuf 7, while skypilot's cloud extras pin protobuf < 7.
    from transformers.convert_slow_tokenizer import import_protobuf

    return import_protobuf()


def _proto(model: bytes):
    pb = _pb()
    m = pb.ModelProto()
    m.ParseFromString(model)
    return m


def train_sentencepiece(texts: Iterable[str], vocab_size: int, *, model_type: str = "bpe",
                        character_coverage: float = 0.9995) -> bytes:
    """A SentencePiece model trained on `texts` (returned as the serialized model)."""
    import sentencepiece as spm

    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UserError("the vocabulary corpus is empty: give Chinese documents (JSONL 'text' or .txt)")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type=model_type,
        character_coverage=character_coverage, hard_vocab_limit=False,  # a small corpus may not fill it
        split_digits=True, byte_fallback=False, minloglevel=2, num_threads=1)
    return buf.getvalue()


def merge_sentencepiece(base: bytes, new: bytes, *, cjk_only: bool = True) -> tuple[bytes, list[str]]:
    """Append `new`'s normal pieces that `base` lacks; returns (merged model, added pieces)."""
    pb = _pb()
    b, n = _proto(base), _proto(new)
    if b.trainer_spec.model_type != n.trainer_spec.model_type:
        raise UserError(f"the new vocabulary is {pb.TrainerSpec.ModelType.Name(n.trainer_spec.model_type)} but the "
                        f"base is {pb.TrainerSpec.ModelType.Name(b.trainer_spec.model_type)}: train the same kind")
    have = {p.piece for p in b.pieces}
    added = []
    for p in n.pieces:
        if p.type != pb.ModelProto.SentencePiece.NORMAL or p.piece in have:
            continue
        if cjk_only and not CJK.search(p.piece):
            continue
        q = b.pieces.add()
        q.piece, q.score, q.type = p.piece, 0.0, pb.ModelProto.SentencePiece.NORMAL
        have.add(p.piece)
        added.append(p.piece)
    return b.SerializeToString(), added


def extend_tokenizer(base_model_file: str | os.PathLike, texts: Iterable[str], out_dir: str | os.PathLike, *,
                     new_vocab: int = 20000) -> dict:
    """Train on `texts`, merge into the base SentencePiece model, save a loadable tokenizer dir."""
    base_path = Path(base_model_file)
    if base_path.is_dir():
        base_path = base_path / TOKENIZER_FILE
    if not base_path.is_file():
        raise UserError(f"{base_path} not found: vocabulary extension needs the base model's SentencePiece "
                        f"{TOKENIZER_FILE} (LLaMA-family bases ship one)")
    base = base_path.read_bytes()
    new = train_sentencepiece(texts, new_vocab, model_type=_model_type_name(base))
    merged, added = merge_sentencepiece(base, new)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (out / stale).unlink(missing_ok=True)  # else the loader would read an older vocabulary
    atomic_write(out / TOKENIZER_FILE, merged)
    tok = load_sentencepiece_tokenizer(out)
    tok.save_pretrained(str(out))  # tokenizer.json too: AutoTokenizer then loads the dir directly
    info = {"base": str(base_path), "base_size": len(_proto(base).pieces), "added": len(added),
            "size": len(_proto(merged).pieces), "first_new_id": len(_proto(base).pieces)}
    atomic_write_json(out / "vocab_extension.json", {**info, "added_pieces": added})
    return info


def _model_type_name(model: bytes) -> str:
    pb = _pb()
    return pb.TrainerSpec.ModelType.Name(_proto(model).trainer_spec.model_type).lower()


def load_sentencepiece_tokenizer(model_dir: str | os.PathLike, *, legacy: bool = False):
    """A transformers LLaMA tokenizer over the SentencePiece `tokenizer.model` in `model_dir`,
    with LLaMA's own settings (BOS added, no EOS): a bare .model file carries no such config."""
    from transformers import LlamaTokenizer

    return LlamaTokenizer.from_pretrained(str(model_dir), legacy=legacy, add_bos_token=True, add_eos_token=False)


# ------------------------------------------------------------------------------ embeddings

def resize_embeddings(model, old_tok, new_tok, *, init: str = "subtokens") -> list[int]:
    """Grow the input embeddings and LM head to `len(new_tok)`; returns the new ids.

    init="subtokens": each new row is the mean of the old rows its string tokenizes to with the
    OLD tokenizer (for a tied head, the same row serves both). init="mean": the mean of all old rows.
    """
    import torch

    if init not in ("subtokens", "mean"):
        raise UserError(f"unknown embedding init {init!r}: use 'subtokens' or 'mean'")
    n_old = model.get_input_embeddings().weight.shape[0]
    n_new = len(new_tok)
    if n_new <= n_old:
        return []
    for i in range(min(len(old_tok), n_old)):  # the invariant everything else relies on
        if new_tok.convert_ids_to_tokens(i) != old_tok.convert_ids_to_tokens(i):
            raise UserError(f"token id {i} changed between the tokenizers: the extension must only append")
    model.resize_token_embeddings(n_new, mean_resizing=False)
    new_ids = list(range(n_old, n_new))
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is None or head.weight.data_ptr() == emb.data_ptr()
    with torch.no_grad():
        mats = [emb] if tied else [emb, head.weight]
        for w in mats:
            mean = w[:n_old].mean(dim=0)
            for i in new_ids:
                if init == "mean":
                    w[i] = mean
                    continue
                piece = new_tok.convert_ids_to_tokens(i)
                sub = [j for j in old_tok(new_tok.convert_tokens_to_string([piece]),
                                          add_special_tokens=False)["input_ids"] if j < n_old]
                w[i] = w[sub].mean(dim=0) if sub else mean
    model.config.vocab_size = n_new
    return new_ids


def freeze_old_rows(model, n_old: int) -> list:
    """Stage 1: only the new embedding / LM-head rows learn; everything else is frozen.

    Returns the gradient hooks (keep them; `.remove()` them to unfreeze for stage 2).
    """
    for p in model.parameters():
        p.requires_grad_(False)
    hooks = []
    params = {id(model.get_input_embeddings().weight): model.get_input_embeddings().weight}
    if model.get_output_embeddings() is not None:
        params[id(model.get_output_embeddings().weight)] = model.get_output_embeddings().weight
    for w in params.values():
        w.requires_grad_(True)

        def zero_old(grad, n=n_old):
            grad = grad.clone()
            grad[:n] = 0
            return grad

        hooks.append(w.register_hook(zero_old))
    return hooks


# ------------------------------------------------------------------------------ measurement

def tokens_per_char(tok, texts: Iterable[str]) -> float:
    """Tokens per character over `texts` (no special tokens): what the extension must lower."""
    n_tok = n_chr = 0
    for t in texts:
        n_tok += len(tok(t, add_special_tokens=False)["input_ids"])
        n_chr += len(t)
    if not n_chr:
        raise UserError("no text to measure tokens per character on")
    return n_tok / n_chr


def loss_per_char(model, tok, texts: Iterable[str], *, block_size: int = 256) -> float:
    """Summed next-token loss divided by characters: comparable across tokenizers (per-token is not)."""
    import torch

    model.eval()
    total, chars = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = document_ids(t, tok)[:block_size]
            x = torch.tensor([ids])
            out = model(input_ids=x, labels=x)
            total += float(out.loss) * (len(ids) - 1)
            chars += len(t)
    if not chars:
        raise UserError("no text to measure loss per character on")
    return total / chars


# ------------------------------------------------------------------------------ CLI

def _read_texts(corpus: str):
    return read_documents(corpus)  # lazy: the base model is checked before the corpus is read


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lib.train.vocab", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extend", help="train Chinese pieces and append them to a SentencePiece tokenizer")
    e.add_argument("--base", required=True, help="base tokenizer.model (or a checkpoint dir holding one)")
    e.add_argument("--corpus", required=True, help="Chinese corpus: JSONL with 'text' or .txt files")
    e.add_argument("--out", required=True)
    e.add_argument("--new-vocab", type=int, default=20000)
    r = sub.add_parser("resize", help="resize a checkpoint's embeddings for an extended tokenizer")
    r.add_argument("--model", required=True)
    r.add_argument("--tokenizer", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--init", default="subtokens", choices=["subtokens", "mean"])
    a = ap.parse_args(argv)
    if a.cmd == "extend":
        info = extend_tokenizer(a.base, _read_texts(a.corpus), a.out, new_vocab=a.new_vocab)
        print(json.dumps(info))
        return
    from transformers import AutoModelForCausalLM, AutoTokenizer

    old_tok = AutoTokenizer.from_pretrained(a.model)
    new_tok = AutoTokenizer.from_pretrained(a.tokenizer)
    model = AutoModelForCausalLM.from_pretrained(a.model)
    added = resize_embeddings(model, old_tok, new_tok, init=a.init)

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        new_tok.save_pretrained(str(tmp))

    final = Path(a.out)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    write(tmp)
    publish_dir(tmp, final)
    print(json.dumps({"model": a.out, "added_rows": len(added), "vocab_size": len(new_tok)}))


if __name__ == "__main__":
    main()
