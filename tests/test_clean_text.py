"""Cleaning a pretraining corpus with the instruction-data filters: exact, near-duplicate, language."""
from __future__ import annotations

import json
import subprocess
import sys

from lib.clean.filters import CleanConfig
from lib.clean.text import clean_text, read_text_records
from lib.paths import REPO
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
