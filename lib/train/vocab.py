"""Chinese vocabulary extension, the Chinese-LLaMA way: new pieces appended, old ids untouched.

LLaMA's 32K SentencePiece vocabulary knows few Chinese characters: most cost 1-3 byte-fallback
tokens each, so Chinese text takes ~1.5-2 tokens per character and every later step (SFT,
inference) pays for it. Chinese-LLaMA trained a SentencePiece model on Chinese text and
appended its pieces to LLaMA's model; we do the same with the `sentencepiece` library:

    python -m lib.train.vocab extend --base tokenizer.model --corpus zh.jsonl --out runs/x/tokenizer
    python -m lib.train.vocab resize --model base_ckpt --tokenizer runs/x/tokenizer --out runs/x/base_zh

Invariants, enforced in `merge_sentencepiece` / `check_extends` and tested:
- every existing piece keeps its id, type and score (the model's old rows still mean the same);
- new pieces are appended after the last old id, in the order the Chinese model ranks them;
- `resize` refuses a tokenizer whose first ids are not the base model's own, piece for piece.

One tokenization everywhere. A SentencePiece BPE model is applied by merging, at each step, the
adjacent pair whose merged piece has the highest score: so do the `sentencepiece` library,
transformers' SentencePiece-backed ("slow") class and llama.cpp, which reads the scores from the
GGUF. transformers 5 converts a .model file to its fast BPE with merges ranked by id instead.
Two rules make the four agree, id for id (tests/test_train_vocab.py):
- `appended_scores`: new piece k scores below every old piece, decreasing with id, so that score
  order and id order are the same order for the new pieces (score 0 for all, Chinese-LLaMA's
  choice, puts them above every old piece and ties them; transformers then picks by id,
  SentencePiece by position, and the two segment `我们` differently);
- `sentencepiece_merges`: our fast tokenizer (tokenizer.json, the one training loads) ranks merges
  by score, as transformers 4 did: LLaMA's own `▁▁`/`▁▁▁▁` score -1e9 at ids 259/260, so by id
  transformers 5 merges runs of spaces first and disagrees with SentencePiece on indented code.

Differences from Chinese-LLaMA's scripts/merge_tokenizer/merge_tokenizers.py (which appends every
piece of its 20K Chinese unigram model that LLaMA lacks, score 0; tests/test_train_vocab.py runs
both rules on that model, ../shared/data/chinese_llama_sp.model, and counts; docs/fidelity.md):
- only pieces with a CJK character are appended (`CJK`), so English text tokenizes exactly as
  before; the published rule also appends digit runs and punctuation (`2016`, `。”`, `......`);
- new pieces get `appended_scores`, not 0 (above);
- the source model's type does not matter: pieces are appended in its rank order either way.

New embedding rows start at the mean of the old rows of each new piece's real sub-tokens (the
old tokenizer's pieces for the piece's own text, without the bare word-boundary piece `▁`),
"subtokens", or at the mean of all old rows ("mean"). `freeze_old_rows` gives stage 1 of
Chinese-LLaMA's two stages: only the new rows of the embeddings and LM head learn; stage 2
trains everything (or LoRA with the embeddings trainable). `resize` records the base vocabulary
in the model's config (`vocab_extension`); `check_extended_vocab` checks a checkpoint against
that record before continued pretraining.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path

from google.protobuf.message import DecodeError
from tokenizers.models import BPE

from lib.core.errors import UserError, cli
from lib.core.files import atomic_write, atomic_write_json, is_complete, publish_dir
from lib.core.model import checked_tokenizer
from lib.core.text import CJK
from lib.train.text import document_ids, read_documents

TOKENIZER_FILE = "tokenizer.model"
EXTENSION_FILE = "vocab_extension.json"  # what `extend` did, saved beside the tokenizer
VOCAB_RECORD = "vocab_extension"  # the key in a resized model's config.json (`extension_record`)
WORD_BOUNDARY = "▁"  # SentencePiece's whitespace piece


# ------------------------------------------------------------------------------ tokenizer

def _pb():
    # transformers' own generated copy of SentencePiece's model proto: sentencepiece 0.2.3's is
    # generated for protobuf 7, while skypilot's cloud extras pin protobuf < 7.
    from transformers.convert_slow_tokenizer import import_protobuf

    return import_protobuf()


def parse_sentencepiece(model: bytes):
    """The SentencePiece ModelProto of a serialized model (pieces, scores, types, trainer spec)."""
    pb = _pb()
    m = pb.ModelProto()
    m.ParseFromString(model)
    return m


def read_sentencepiece(path: str | os.PathLike) -> bytes:
    """The bytes of a SentencePiece model file (or of a checkpoint dir's tokenizer.model), refused
    with one line unless the `sentencepiece` library loads it."""
    import sentencepiece as spm

    p = Path(path)
    if p.is_dir():
        p = p / TOKENIZER_FILE
    fix = f"give a SentencePiece {TOKENIZER_FILE} (LLaMA-family checkpoints ship one)"
    if not p.is_file():
        raise UserError(f"{p} not found: {fix}")
    data = p.read_bytes()
    if not data:
        raise UserError(f"{p} is empty: {fix}")
    try:
        pieces = len(parse_sentencepiece(data).pieces)
        spm.SentencePieceProcessor(model_proto=data)
    except (DecodeError, RuntimeError):
        pieces = 0
    if not pieces:
        raise UserError(f"{p} is not a SentencePiece model (it does not load as one): {fix}")
    return data


def train_sentencepiece(texts: Iterable[str], vocab_size: int, *, model_type: str = "bpe",
                        character_coverage: float = 0.9995) -> bytes:
    """A SentencePiece model trained on `texts` (returned as the serialized model)."""
    import sentencepiece as spm

    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UserError("the vocabulary corpus is empty: give Chinese documents (JSONL 'text' or .txt)")
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type=model_type,
            character_coverage=character_coverage, hard_vocab_limit=False,  # a small corpus may not fill it
            split_digits=True, byte_fallback=False, minloglevel=2, num_threads=1)
    except RuntimeError as e:
        if "smaller than required_chars" not in str(e):
            raise
        need = re.search(r"vs (\d+)", str(e))
        raise UserError(f"--new-vocab {vocab_size} is smaller than the corpus's "
                        f"{need.group(1) if need else 'many'} distinct characters: raise it") from None
    return buf.getvalue()


def appended_scores(old_scores: Iterable[float], n: int) -> list[float]:
    """Scores for `n` appended pieces: below every old score and strictly decreasing with id, exact
    in float32 (the model file's type). SentencePiece and llama.cpp rank by score, transformers 5
    by id: with this rule the two orders agree on every new piece. The step is 1 unless float32
    cannot tell the values apart (LLaMA's lowest score is -1e9, where float32 steps by 64)."""
    floor = array("f", [min(old_scores, default=0.0)])[0]
    step = 1.0
    while True:
        scores = array("f", (floor - step * k for k in range(1, n + 1))).tolist()  # rounded to float32
        if n == 0 or (scores[0] < floor and all(a > b for a, b in zip(scores, scores[1:]))):
            return scores
        step *= 2


def merge_sentencepiece(base: bytes, new: bytes, *, cjk_only: bool = True) -> tuple[bytes, list[str]]:
    """Append `new`'s normal pieces that `base` lacks, scored by `appended_scores`; returns
    (merged model, added pieces). `new` may be of another model type (Chinese-LLaMA merged a
    unigram model into LLaMA's BPE): its pieces are appended in its own rank order either way."""
    pb = _pb()
    b, n = parse_sentencepiece(base), parse_sentencepiece(new)
    have = {p.piece for p in b.pieces}
    added = []
    for p in n.pieces:
        if p.type != pb.ModelProto.SentencePiece.NORMAL or p.piece in have:
            continue
        if cjk_only and not CJK.search(p.piece):
            continue
        have.add(p.piece)
        added.append(p.piece)
    for piece, score in zip(added, appended_scores((p.score for p in b.pieces), len(added))):
        q = b.pieces.add()
        q.piece, q.score, q.type = piece, score, pb.ModelProto.SentencePiece.NORMAL
    return b.SerializeToString(), added


def sentencepiece_merges(model: bytes) -> list[tuple[str, str]]:
    """The BPE merges of a SentencePiece BPE model, ranked as SentencePiece ranks them: by the
    merged piece's score, highest first (transformers 4's conversion; transformers 5 ranks by id)."""
    from transformers.tokenization_utils_base import generate_merges

    m = parse_sentencepiece(model)
    normal = _pb().ModelProto.SentencePiece.NORMAL
    vocab = {p.piece: i for i, p in enumerate(m.pieces)}
    return generate_merges(vocab, {p.piece: p.score for p in m.pieces if p.type == normal})


def load_sentencepiece_tokenizer(model_dir: str | os.PathLike, *, legacy: bool = False):
    """A transformers LLaMA tokenizer over the SentencePiece `tokenizer.model` in `model_dir`,
    with LLaMA's own settings (BOS added, no EOS): a bare .model file carries no such config.
    Its merges are ranked by score (`sentencepiece_merges`), so it segments as SentencePiece does."""
    from transformers import LlamaTokenizer

    model = read_sentencepiece(model_dir)
    tok = LlamaTokenizer.from_pretrained(str(model_dir), legacy=legacy, add_bos_token=True, add_eos_token=False)
    m = parse_sentencepiece(model)
    if m.trainer_spec.model_type == _pb().TrainerSpec.BPE:
        vocab = {p.piece: i for i, p in enumerate(m.pieces)}
        tok.backend_tokenizer.model = BPE(vocab=vocab, merges=sentencepiece_merges(model), fuse_unk=True,
                                          byte_fallback=True)
    return tok


def _model_type_name(model: bytes) -> str:
    pb = _pb()
    return pb.TrainerSpec.ModelType.Name(parse_sentencepiece(model).trainer_spec.model_type).lower()


def extend_tokenizer(base_model_file: str | os.PathLike, texts: Iterable[str], out_dir: str | os.PathLike, *,
                     new_vocab: int = 20000) -> dict:
    """Train on `texts`, merge into the base SentencePiece model, save a loadable tokenizer dir.
    Every input is checked before training; the directory appears whole or not at all."""
    base_path = Path(base_model_file)
    base_path = base_path / TOKENIZER_FILE if base_path.is_dir() else base_path
    base = read_sentencepiece(base_path)
    if not isinstance(new_vocab, int) or new_vocab < 1:
        raise UserError(f"--new-vocab {new_vocab!r} must be a positive number of pieces to train (e.g. 20000)")
    out = Path(out_dir)
    _check_output_dir(out)
    merged, added = merge_sentencepiece(base, train_sentencepiece(texts, new_vocab, model_type=_model_type_name(base)))
    if not added:
        raise UserError("the corpus gave no Chinese piece that the base lacks: give Chinese documents")
    n_base = len(parse_sentencepiece(base).pieces)
    info = {"base": str(base_path), "base_size": n_base, "added": len(added), "size": n_base + len(added),
            "first_new_id": n_base}

    def write(tmp: Path) -> None:
        atomic_write(tmp / TOKENIZER_FILE, merged)
        load_sentencepiece_tokenizer(tmp).save_pretrained(str(tmp))  # tokenizer.json: AutoTokenizer loads the dir
        atomic_write_json(tmp / EXTENSION_FILE, {**info, "added_pieces": added})

    _publish_new_dir(out, write)
    return info


def _check_output_dir(out: Path, *inputs: Path) -> None:
    """Refuse an output directory that is an input, or that holds something other than an earlier
    output of this module (which is replaced whole)."""
    if any(out.resolve() == Path(i).resolve() for i in inputs):
        raise UserError(f"--out {out} is also an input: write to a new directory")
    if out.exists() and not (out.is_dir() and (is_complete(out) or not any(out.iterdir()))):
        raise UserError(f"--out {out} exists and is not an earlier output of this command: choose a new directory")


def _publish_new_dir(out: Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` into a sibling temporary directory, then rename it to `out` (lib.core.files.publish_dir)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        return publish_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ one vocabulary

def pieces(tok) -> list[str]:
    """Every piece of a transformers tokenizer, by id (added tokens included)."""
    return tok.convert_ids_to_tokens(list(range(len(tok))))


def check_extends(base_tok, new_tok, *, base: str = "the base model", new: str = "the extended tokenizer") -> None:
    """Refuse unless `new_tok`'s first ids are `base_tok`'s, piece for piece: an extension may only
    append, or the model's rows would mean other tokens. The line names the first differing id."""
    old, ext = pieces(base_tok), pieces(new_tok)
    for i, piece in enumerate(old):
        got = ext[i] if i < len(ext) else None
        if got != piece:
            shown = "nothing" if got is None else repr(got)
            raise UserError(f"{new} does not extend {base}'s vocabulary: id {i} is {piece!r} in {base} and {shown} "
                            f"in {new}: extend the base model's own {TOKENIZER_FILE} "
                            "(python -m lib.train.vocab extend --base <base model dir> ...)")


def _digest(ps: list[str]) -> str:
    return hashlib.sha256(json.dumps(ps, ensure_ascii=False).encode()).hexdigest()


def extension_record(base_tok, new_tok) -> dict:
    """What a resized model's config.json keeps (`VOCAB_RECORD`) for `check_extended_vocab`."""
    return {"base_vocab_size": len(base_tok), "vocab_size": len(new_tok),
            "base_pieces_sha256": _digest(pieces(base_tok))}


def check_extended_vocab(tok, config, first_new_id: int = 0) -> None:
    """Before continued pretraining on an extended vocabulary: `tok` (loaded with the model) must
    start with the base vocabulary that `resize` recorded in `config`, and a recipe that trains the
    rows from `first_new_id` on (`new_embeddings_from`) needs a model resized from that base."""
    rec = getattr(config, VOCAB_RECORD, None)
    if rec is None:
        if first_new_id:
            raise UserError(f"the recipe trains the embedding rows from id {first_new_id} on, but the model has no "
                            f"vocabulary-extension record ({VOCAB_RECORD!r} in its config.json): extend and resize "
                            "the base first (python -m lib.train.vocab extend, then resize)")
        return
    n = rec["base_vocab_size"]
    if first_new_id and first_new_id != n:
        raise UserError(f"the recipe's new_embeddings_from is {first_new_id} but the model's vocabulary extends a "
                        f"base of {n} pieces: set new_embeddings_from: {n}")
    have = pieces(tok)
    if len(have) < rec["vocab_size"] or _digest(have[:n]) != rec["base_pieces_sha256"]:
        raise UserError(f"the tokenizer loaded with the model is not the one its embeddings were resized for (its "
                        f"ids 0-{n - 1} are not the base's, or it has {len(have)} pieces where the model was resized "
                        f"to {rec['vocab_size']}): train with the tokenizer `vocab resize` saved beside the model")
    if len(have) > config.vocab_size:
        raise UserError(f"the tokenizer has {len(have)} pieces but the model {config.vocab_size} embedding rows: "
                        "resize the model for this tokenizer (python -m lib.train.vocab resize)")


# ------------------------------------------------------------------------------ embeddings

def subtoken_ids(old_tok, piece: str) -> list[int]:
    """The old tokenizer's ids for a new piece's own text: its BPE model applied to the piece as it
    stands (no dummy prefix added), less the bare word-boundary piece `▁` (a piece `▁我们` is
    `我`+`们` at a word start, not the mean of a space and two characters)."""
    return [t.id for t in old_tok.backend_tokenizer.model.tokenize(piece) if t.value != WORD_BOUNDARY]


def resize_embeddings(model, old_tok, new_tok, *, init: str = "subtokens") -> list[int]:
    """Grow the input embeddings and LM head for `new_tok` (which must extend `old_tok`, the
    model's own tokenizer); returns the new ids and records the base in `model.config`.

    init="subtokens": each new row is the mean of the old rows of `subtoken_ids` (for a tied
    head, the same row serves both). init="mean": the mean of all old rows.
    """
    import torch

    if init not in ("subtokens", "mean"):
        raise UserError(f"unknown embedding init {init!r}: use 'subtokens' or 'mean'")
    check_extends(old_tok, new_tok)
    n_base, n_new = len(old_tok), len(new_tok)
    n_rows = model.get_input_embeddings().weight.shape[0]
    if n_rows < n_base:
        raise UserError(f"the model has {n_rows} embedding rows but the tokenizer given as its own has {n_base} "
                        "pieces: give the base model's own tokenizer")
    new_ids = list(range(n_base, n_new))
    if not new_ids:
        return []
    if n_new > n_rows:
        model.resize_token_embeddings(n_new, mean_resizing=False)
    subs = {i: subtoken_ids(old_tok, new_tok.convert_ids_to_tokens(i)) if init == "subtokens" else []
            for i in new_ids}
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is None or head.weight.data_ptr() == emb.data_ptr()
    with torch.no_grad():
        for w in [emb] if tied else [emb, head.weight]:
            mean = w[:n_base].mean(dim=0)
            for i in new_ids:
                w[i] = w[subs[i]].mean(dim=0) if subs[i] else mean
    model.config.vocab_size = max(n_rows, n_new)
    setattr(model.config, VOCAB_RECORD, extension_record(old_tok, new_tok))
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


def _load_tokenizer(path: Path, flag: str):
    try:
        return checked_tokenizer(path, f"{flag}: give a checkpoint directory with its tokenizer files")
    except (OSError, ValueError) as e:
        raise UserError(f"{flag} {path}: no tokenizer loads from it ({str(e).splitlines()[0][:120]}): give a "
                        "checkpoint directory with its tokenizer files") from None


def resize_checkpoint(model_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike, out: str | os.PathLike, *,
                      init: str = "subtokens") -> dict:
    """`vocab resize`: the checkpoint in `model_dir` with rows for the extended tokenizer in
    `tokenizer_dir`, saved whole to `out` with that tokenizer (tokenizer.model too: llama.cpp's
    converter reads the scores from it). The vocabularies are checked before the weights load."""
    from transformers import AutoModelForCausalLM

    model_dir, tok_dir, out = Path(model_dir), Path(tokenizer_dir), Path(out)
    for flag, d in (("--model", model_dir), ("--tokenizer", tok_dir)):
        if not d.is_dir():
            raise UserError(f"{flag} {d} is not a directory: give a local checkpoint (--model) and the directory "
                            "`vocab extend` wrote (--tokenizer)")
    if not (model_dir / "config.json").is_file():
        raise UserError(f"--model {model_dir} has no config.json: give a Hugging Face checkpoint directory")
    _check_output_dir(out, model_dir, tok_dir)
    old_tok, new_tok = _load_tokenizer(model_dir, "--model"), _load_tokenizer(tok_dir, "--tokenizer")
    check_extends(old_tok, new_tok, base=f"the base model {model_dir}", new=f"the tokenizer {tok_dir}")
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    added = resize_embeddings(model, old_tok, new_tok, init=init)

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        new_tok.save_pretrained(str(tmp))
        for name in (TOKENIZER_FILE, EXTENSION_FILE):
            if (tok_dir / name).is_file():
                atomic_write(tmp / name, (tok_dir / name).read_bytes())

    _publish_new_dir(out, write)
    return {"model": str(out), "added_rows": len(added), "vocab_size": len(new_tok)}


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
    if a.cmd == "extend":  # the corpus is read lazily: the base and --new-vocab are checked first
        print(json.dumps(extend_tokenizer(a.base, read_documents(a.corpus), a.out, new_vocab=a.new_vocab)))
    else:
        print(json.dumps(resize_checkpoint(a.model, a.tokenizer, a.out, init=a.init)))


if __name__ == "__main__":
    main()
