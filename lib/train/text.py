"""Raw text for continued pretraining: documents -> one token stream -> fixed blocks.

This is the TencentPretrain / Chinese-LLaMA stage: plain language-model loss on every token of
raw documents, not prompt/response pairs. The corpus is read as a stream (JSONL `{"text": ...}`
or plain text, one document per line) through `datasets`, so it may be larger than memory:

    docs = read_documents(["zh_wiki.jsonl"])           # an iterator; nothing is loaded whole
    for ids, after in iter_blocks(docs, tok, block_size=512):
        ...                                            # `after` is where the next block starts

Each document is tokenized on its own (BOS first when the tokenizer adds one, EOS last),
the documents are concatenated, and the stream is cut into blocks of exactly `block_size`
tokens. A block may hold the end of one document and the start of the next (the EOS between
them is what tells the model a new document begins), so there is no padding at all and every
position has a label. The tail shorter than a block is dropped and counted, as the original
recipes (`group_texts` in Hugging Face's run_clm, TencentPretrain's dataset builder) do.

Resume is exact: a `Position` (document index, token offset inside that document) names the
first token of a block, `iter_blocks(..., start=pos)` continues from it, and the blocks it
yields are the ones an uninterrupted pass yields from there on (tested).
"""
from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lib.core.errors import UserError
from lib.core.files import atomic_write_json, corpus_files
from lib.core.masking import bos_prefix, eos_id


@dataclass(frozen=True)
class Position:
    doc: int = 0  # index of the document the next block starts in (0-based, in corpus order)
    offset: int = 0  # token offset inside that document's ids (BOS and EOS included)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class BlockStats:
    documents: int = 0
    tokens: int = 0  # tokens in the stream, BOS/EOS included
    blocks: int = 0
    dropped_tail: int = 0  # tokens after the last whole block (not trained)
    empty: int = 0  # documents with no text
    end: Position = field(default_factory=Position)

    @property
    def total(self) -> int:  # what the trainer's "no trainable samples out of N" counts
        return self.documents

    def as_dict(self) -> dict:
        # kept/total/truncated/dropped: the keys every training report reads (as MaskingReport's),
        # meaning training examples (blocks), documents read, none cut, documents skipped.
        common = {"kept": self.blocks, "total": self.documents, "truncated": 0,
                  "dropped": {"empty document": self.empty} if self.empty else {}}
        return {**asdict(self), "end": self.end.as_dict(), **common}

    @classmethod
    def from_dict(cls, d: dict) -> "BlockStats":
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{**{k: v for k, v in d.items() if k in names}, "end": Position(**d.get("end", {}))})

    def summary(self) -> str:
        return (f"{self.documents} documents, {self.tokens} tokens -> {self.blocks} blocks; "
                f"{self.dropped_tail} tail tokens dropped, {self.empty} empty documents")


def read_documents(paths, *, text_field: str = "text") -> Iterator[str]:
    """Documents of a corpus, streamed by `datasets` (never loaded whole), in a fixed order."""
    from datasets import load_dataset

    files = corpus_files(paths)
    is_txt = files[0].suffix == ".txt"
    ds = load_dataset("text" if is_txt else "json", data_files=[str(f) for f in files], split="train",
                      streaming=True)
    for i, row in enumerate(ds):
        text = row.get("text" if is_txt else text_field)
        if text is None:
            raise UserError(f"corpus record {i} has no {text_field!r} field: give JSONL like "
                            '{"text": "..."} or plain .txt files')
        yield str(text)


def document_ids(text: str, tok) -> list[int]:
    """One document's ids: the tokenizer's own BOS (if it adds one), the text, then EOS."""
    return bos_prefix(tok) + tok(text, add_special_tokens=False)["input_ids"] + [eos_id(tok)]


def iter_blocks(docs: Iterable[str], tok, block_size: int, *, start: Position = Position(),
                stats: BlockStats | None = None) -> Iterator[tuple[list[int], Position]]:
    """Yield (block ids, position of the next block) from `start` on.

    The buffer keeps (document index, offset of its first token, ids) pieces, so the position
    after each block is known exactly without re-tokenizing anything.
    """
    if block_size < 2:
        raise UserError(f"block_size {block_size} is too small: use the recipe's max_length (e.g. 512)")
    stats = stats if stats is not None else BlockStats()
    pending: deque[tuple[int, int, list[int]]] = deque()
    buffered = 0
    for i, text in enumerate(docs):
        if i < start.doc:
            continue
        stats.documents += 1
        if not text.strip():
            stats.empty += 1
            continue
        ids = document_ids(text, tok)
        offset = start.offset if i == start.doc else 0
        if offset >= len(ids) and i == start.doc and offset:
            raise UserError(f"resume position {start} lies past document {i}'s {len(ids)} tokens: "
                            "the corpus or tokenizer changed since the checkpoint; restart without resuming")
        ids = ids[offset:]
        stats.tokens += len(ids)
        pending.append((i, offset, ids))
        buffered += len(ids)
        while buffered >= block_size:
            block: list[int] = []
            while len(block) < block_size:
                doc, off, piece = pending.popleft()
                take = block_size - len(block)
                block += piece[:take]
                if take < len(piece):
                    pending.appendleft((doc, off + take, piece[take:]))
            buffered -= block_size
            nxt = Position(pending[0][0], pending[0][1]) if pending else Position(i + 1, 0)
            stats.blocks += 1
            stats.end = nxt
            yield block, nxt
    stats.dropped_tail = buffered


def block_examples(paths, tok, block_size: int, *, start: Position = Position(),
                   stats: BlockStats | None = None) -> Iterator[dict]:
    """Training examples from a corpus: every token is a label (no -100 anywhere, no padding)."""
    for ids, _ in iter_blocks(read_documents(paths), tok, block_size, start=start, stats=stats):
        yield {"input_ids": ids, "labels": list(ids)}


def encode_corpus(paths, tok, block_size: int, *, cache_dir: str | os.PathLike | None = None):
    """(training examples, BlockStats) of a corpus, what `lib.train.sft` trains on for format "text".

    Without `cache_dir` the blocks are a list (held-out text, small corpora). With it they are a
    map-style Dataset on disk (see `build_block_dataset`), so the corpus never has to fit in memory.
    """
    corpus_files(paths)  # a missing or mixed corpus fails here, before any tokenizing
    if cache_dir is None:
        stats = BlockStats()
        return list(block_examples(paths, tok, block_size, stats=stats)), stats
    ds = build_block_dataset(paths, tok, block_size, cache_dir)
    stats = BlockStats.from_dict(json.loads((Path(cache_dir) / STATS_FILE).read_text(encoding="utf-8")))
    return ds, stats


STATS_FILE = "blocks.json"


def build_block_dataset(paths, tok, block_size: int, cache_dir: str | os.PathLike):
    """The blocks as a map-style `datasets.Dataset` written to Arrow files under `cache_dir`.

    The corpus is streamed through the generator, and the blocks go to memory-mapped Arrow files
    on disk, so neither needs to fit in memory. A map-style dataset lets the Trainer resume at
    the exact sample after a preemption (it replays its seeded sampler and skips what was seen).
    """
    from datasets import Dataset

    files = [str(f) for f in corpus_files(paths)]
    return Dataset.from_generator(
        _gen_blocks, gen_kwargs={"files": files, "tok_name": getattr(tok, "name_or_path", ""), "block_size": block_size,
                                 "_tok": tok, "stats_path": str(Path(cache_dir) / STATS_FILE)},
        cache_dir=str(cache_dir))


def _gen_blocks(files, tok_name, block_size, _tok, stats_path):
    # tok_name is part of gen_kwargs so the dataset cache key changes with the tokenizer. The
    # stats are written when the stream ends; a cached dataset is reused with the same file.
    stats = BlockStats()
    yield from block_examples(files, _tok, block_size, stats=stats)
    atomic_write_json(stats_path, stats.as_dict())
