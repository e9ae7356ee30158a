"""Cleaning a raw-text corpus for continued pretraining: the same filters as instruction data.

A pretraining corpus (JSONL `{"text": ...}`) is cleaned with the filters `lib.clean.filters`
already runs on instruction data, in the same order and with the same switches: exact
duplicates, MinHash near-duplicates (datasketch) and language (lingua). Refusal, identity and
short-answer filters are about replies and do not apply to documents.

    python -m lib.clean.text corpus.jsonl clean_corpus.jsonl --languages zh
"""
from __future__ import annotations

import argparse
import json

from lib.clean.filters import CleanConfig, MinHashIndex, exact_duplicates, near_duplicates, wrong_language
from lib.core.errors import UserError, cli
from lib.core.files import atomic_write_jsonl, corpus_files, parse_jsonl


def read_text_records(paths) -> list[dict]:
    """The whole corpus as records, every field kept and an id added: the filters need all of
    it at once (duplicates) and the cleaned corpus keeps what the input carried. Training's
    `lib.train.text.read_documents` streams only the text instead (a corpus may not fit in
    memory); both read the same files (`lib.core.files.corpus_files`: files, directories, .txt or JSONL)."""
    recs = []
    for p in corpus_files(paths):
        if p.suffix == ".txt":
            recs += [{"text": t} for t in p.read_text(encoding="utf-8").splitlines() if t.strip()]
            continue
        fix = 'write one {"text": ...} object a line'
        for n, r in enumerate(parse_jsonl(p.read_text(encoding="utf-8"), str(p), fix), 1):
            if not isinstance(r, dict) or not isinstance(r.get("text"), str):
                raise UserError(f"{p}:{n} has no 'text' string: {fix}")
            recs.append(r)
    for i, r in enumerate(recs):
        r.setdefault("id", f"doc-{i}")
    return recs


def clean_text(recs: list[dict], cfg: CleanConfig) -> tuple[list[dict], dict[str, int]]:
    """(kept documents, {filter: dropped count}) — each filter sees what the previous one kept."""
    counts: dict[str, int] = {}
    steps = [("exact duplicate", lambda rs: exact_duplicates(rs, "all") if cfg.drop_exact_duplicates else {}),
             ("near duplicate",
              lambda rs: near_duplicates(rs, MinHashIndex.build(rs, cfg), cfg) if cfg.drop_near_duplicates else {}),
             ("language", lambda rs: wrong_language(rs, cfg)[0] if cfg.languages else {})]
    for name, step in steps:
        dropped = step(recs)
        counts[name] = len(dropped)
        recs = [r for i, r in enumerate(recs) if i not in dropped]
    return recs, counts


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lib.clean.text", description=__doc__.splitlines()[0])
    ap.add_argument("src", help="the corpus: JSONL or .txt files, or directories of them (comma-separated)")
    ap.add_argument("dst")
    ap.add_argument("--languages", default="zh", help="comma-separated codes to keep (e.g. zh or zh,en)")
    a = ap.parse_args(argv)
    recs = read_text_records(a.src)
    kept, counts = clean_text(recs, CleanConfig(languages=a.languages))
    atomic_write_jsonl(a.dst, kept)
    print(json.dumps({"read": len(recs), "kept": len(kept), "dropped": counts}, ensure_ascii=False))


if __name__ == "__main__":
    main()
