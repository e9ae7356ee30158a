"""Cleaning a pretraining corpus with the instruction-data filters: exact, near-duplicate, language."""
from __future__ import annotations

import json
import subprocess
import sys

from lib.clean.filters import CleanConfig
from lib.clean.text import clean_text, read_text_records
from lib.core.paths import REPO
from lib.train.text import read_documents
from tests.zh_corpus import write_jsonl, zh_split


def test_planted_duplicates_and_foreign_documents_are_dropped_and_counted(tmp_path):
    docs, _ = zh_split(n_train=60, n_held=0)
    docs = [d for d in docs if len(d) >= 40][:30]
    near = docs[3][:-2] + "。好"  # the same long document with its last characters changed
    english = "The hotel room was clean and the staff were friendly, but breakfast was expensive and cold."
    planted = docs + [docs[5], near, english]
    recs = read_text_records(write_jsonl(tmp_path / "c.jsonl", planted))
    kept, counts = clean_text(recs, CleanConfig(languages=("zh",)))
    texts = [r["text"] for r in kept]
    assert counts["exact duplicate"] >= 1 and counts["near duplicate"] >= 1 and counts["language"] == 1
    assert english not in texts and near not in texts and texts.count(docs[5]) == 1
    assert len(texts) == len(dict.fromkeys(docs))
    assert all(d in texts for d in dict.fromkeys(docs))  # every original document survives once


def test_the_cleaner_reads_the_corpus_training_reads(tmp_path):
    """One corpus, two readers: the same files and documents (blank .txt lines aside, which
    training counts as empty documents and cleaning has nothing to keep of)."""
    d = tmp_path / "corpus"
    d.mkdir()
    write_jsonl(d / "2.jsonl", ["二"])
    (d / "1.jsonl").write_text('{"text": "一", "source": "wiki"}\n', encoding="utf-8")
    recs = read_text_records(d)
    assert [r["text"] for r in recs] == list(read_documents(d)) == ["一", "二"]
    assert recs[0] == {"text": "一", "source": "wiki", "id": "doc-0"}  # fields kept, an id added
    (tmp_path / "a.txt").write_text("甲\n\n乙\n", encoding="utf-8")
    assert [r["text"] for r in read_text_records(tmp_path / "a.txt")] == ["甲", "乙"]
    assert list(read_documents(tmp_path / "a.txt")) == ["甲", "", "乙"]


def test_cli_writes_the_cleaned_corpus_and_refuses_bad_records(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", ["今天天气很好，我们一起去公园散步吧，然后去吃饭。"] * 2)
    r = subprocess.run([sys.executable, "-m", "lib.clean.text", str(src), str(tmp_path / "o.jsonl")], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kept"] == 1 and len((tmp_path / "o.jsonl").read_text().splitlines()) == 1
    (tmp_path / "bad.jsonl").write_text('{"body": "x"}\n')
    r = subprocess.run([sys.executable, "-m", "lib.clean.text", str(tmp_path / "bad.jsonl"), str(tmp_path / "o2.jsonl")],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "has no 'text' string" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "o2.jsonl").exists()
