"""Raw-text blocks for continued pretraining: no padding, every token a label, exact resume."""
from __future__ import annotations

import json

import pytest

from lib.core.errors import UserError
from lib.train.text import (BlockStats, Position, block_examples, build_block_dataset, document_ids, iter_blocks,
                            read_documents)
from tests.zh_corpus import llama_model_dir, write_jsonl, zh_split


@pytest.fixture(scope="module")
def tok():
    from lib.train.vocab import load_sentencepiece_tokenizer

    return load_sentencepiece_tokenizer(llama_model_dir())


@pytest.fixture(scope="module")
def docs():
    train, _ = zh_split(n_train=120, n_held=0)
    return train[:60] + ["", "短"] + train[60:]  # an empty and a one-character document among real ones


def test_blocks_are_the_exact_document_stream_cut_without_padding(tok, docs):
    stats = BlockStats()
    blocks = list(iter_blocks(docs, tok, 64, stats=stats))
    stream = [i for d in docs if d.strip() for i in document_ids(d, tok)]
    assert stats.blocks == len(blocks) == len(stream) // 64
    assert all(len(b) == 64 for b, _ in blocks)  # no short (padded) block anywhere
    flat = [i for b, _ in blocks for i in b]
    assert flat == stream[:len(flat)]  # nothing reordered, dropped or added inside the stream
    assert stats.dropped_tail == len(stream) - len(flat) < 64
    assert stats.empty == 1 and stats.tokens == len(stream)
    # Documents are separated by EOS and each starts with the tokenizer's BOS.
    assert stream[0] == tok.bos_token_id and document_ids(docs[0], tok)[-1] == tok.eos_token_id


def test_every_position_is_a_label(tok, tmp_path, docs):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    exs = list(block_examples(path, tok, 48))
    assert exs and all(e["labels"] == e["input_ids"] and -100 not in e["labels"] for e in exs)


@pytest.mark.parametrize("block_size", [16, "first document"])
def test_resume_from_any_block_is_exact(tok, docs, block_size):
    if block_size == "first document":  # the first block ends exactly on a document boundary
        block_size = len(document_ids(docs[0], tok))
    full = list(iter_blocks(docs, tok, block_size))
    starts = [Position()] + [after for _, after in full]
    # Positions fall both inside documents and on document boundaries.
    assert any(p.offset for p in starts) and (block_size == 16 or starts[1] == Position(1, 0))
    for k in range(0, len(full), max(1, len(full) // 12)):
        resumed = list(iter_blocks(docs, tok, block_size, start=starts[k]))
        assert resumed == full[k:], f"resume at block {k} ({starts[k]}) differs"


def test_resume_past_a_changed_document_is_refused(tok, docs):
    with pytest.raises(UserError, match="corpus or tokenizer changed"):
        list(iter_blocks(docs, tok, 64, start=Position(0, 10_000)))


def test_streams_jsonl_and_plain_text(tok, tmp_path):
    (tmp_path / "a.txt").write_text("第一篇文档。\n\n第二篇文档。\n", encoding="utf-8")
    assert list(read_documents(tmp_path / "a.txt")) == ["第一篇文档。", "", "第二篇文档。"]
    write_jsonl(tmp_path / "b.jsonl", ["甲", "乙"])
    assert list(read_documents(str(tmp_path / "b.jsonl"))) == ["甲", "乙"]
    # A directory of JSONL files reads in sorted order.
    d = tmp_path / "dir"
    d.mkdir()
    write_jsonl(d / "2.jsonl", ["二"])
    write_jsonl(d / "1.jsonl", ["一"])
    assert list(read_documents(d)) == ["一", "二"]


@pytest.mark.parametrize("content, match", [
    ('{"body": "no text field"}\n', "has no 'text' field"),
])
def test_bad_corpus_gets_one_line(tmp_path, content, match):
    p = tmp_path / "bad.jsonl"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=match) as e:
        list(read_documents(p))
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="not found"):
        list(read_documents(tmp_path / "missing.jsonl"))


def test_block_dataset_on_disk_matches_the_stream(tok, tmp_path, docs):
    path = write_jsonl(tmp_path / "c.jsonl", docs)
    ds = build_block_dataset(path, tok, 32, tmp_path / "cache")
    want = list(block_examples(path, tok, 32))
    assert len(ds) == len(want) and ds[len(ds) // 2]["input_ids"] == want[len(ds) // 2]["input_ids"]
    assert json.dumps(ds[0]["labels"]) == json.dumps(want[0]["input_ids"])
