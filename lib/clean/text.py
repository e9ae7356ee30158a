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
from pathlib import Path

from lib.clean.filters import CleanConfig, MinHashIndex, exact_duplicates, near_duplicates, wrong_language
from lib.errors import UserError, cli
from lib.files import atomic_write_jsonl, parse_jsonl


def read_text_records(path: str | Path) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"corpus {p} not found: give a JSONL file with one {{\"text\": ...}} a line")
    if p.suffix == ".txt":
        lines = p.read_text(encoding="utf-8").splitlines()
        recs = [{"text": t} for t in lines if t.strip()]
    else:
        recs = parse_jsonl(p.read_text(encoding="utf-8"), str(p), 'write one {"text": ...} object a line')
    for i, r in enumerate(recs):
        if not isinstance(r, dict) or not isinstance(r.get("text"), str):
            raise UserError(f"{p}:{i + 1} has no 'text' string: write one {{\"text\": ...}} object a line")
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
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--languages", default="zh", help="comma-separated codes to keep (e.g. zh or zh,en)")
    a = ap.parse_args(argv)
    recs = read_text_records(a.src)
    kept, counts = clean_text(recs, CleanConfig(languages=a.languages))
    atomic_write_jsonl(a.dst, kept)
    print(json.dumps({"read": len(recs), "kept": len(kept), "dropped": counts}, ensure_ascii=False))


if __name__ == "__main__":
    main()
