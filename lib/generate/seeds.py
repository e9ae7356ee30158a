"""Seed tasks: the project's own small set, or the official 175 from a path or URL.

Every seed file uses the Self-Instruct schema, one JSON object a line:
`{"id", "name", "instruction", "instances": [{"input", "output"}], "is_classification"}`.
The official English set (yizhongw/self-instruct `data/seed_tasks.jsonl`) and BELLE's
Chinese set (`zh_seed_tasks.json`, same schema) are not shipped: pass their path or URL.
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lib.core.errors import UserError
from lib.core.files import atomic_write
from lib.core.text import guess_lang
from lib.core.paths import REPO, cache_dir

BUILTIN = REPO / "lib" / "data" / "seed_tasks.jsonl"
OFFICIAL_URL = "https://raw.githubusercontent.com/yizhongw/self-instruct/main/data/seed_tasks.jsonl"


@dataclass(frozen=True)
class SeedTask:
    id: str
    instruction: str
    input: str
    output: str
    is_classification: bool
    lang: str


def _fetch(url: str) -> Path:
    """Download a seed file once into the cache (atomic), return its path."""
    name = url.rstrip("/").rsplit("/", 1)[-1] or "seeds.jsonl"
    # A digest, not hash(): str hashes are salted per process, so the name must not depend on it.
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    target = cache_dir() / "seeds" / f"{digest}-{name}"
    if target.exists():
        return target
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            data = r.read()
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise UserError(f"cannot download seed tasks from {url} ({e}): check the URL or pass a local seed_path") from None
    atomic_write(target, data)
    return target


def load_seed_tasks(source: str | os.PathLike = "", *, language: str = "all") -> list[SeedTask]:
    """Load seed tasks from `source` ("" = the project's own set, a path, or an http(s) URL).

    `language`: "en", "zh" keeps only seeds whose instruction is in that language
    (detected by script); "all" keeps everything.
    """
    src = str(source or BUILTIN)
    path = _fetch(src) if src.startswith(("http://", "https://")) else Path(src)
    if not path.is_absolute() and not path.exists():
        path = REPO / path
    if not path.is_file():
        raise UserError(f"seed file {src} does not exist: pass seed_path= a Self-Instruct seed_tasks.jsonl path or URL")
    tasks = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                inst = d["instruction"].strip()
                first = (d.get("instances") or [{}])[0]
                inp, out = str(first.get("input", "")).strip(), str(first.get("output", "")).strip()
            except (ValueError, KeyError, TypeError, AttributeError):
                raise UserError(
                    f"{path}:{n} is not a seed task: each line must be JSON with \"instruction\" and "
                    "\"instances\": [{\"input\", \"output\"}] (the Self-Instruct seed_tasks.jsonl schema)"
                ) from None
            if not inst:
                raise UserError(f"{path}:{n} has an empty instruction: fix or delete that line")
            tasks.append(SeedTask(id=str(d.get("id", f"seed_{n}")), instruction=inst, input=inp, output=out,
                                  is_classification=bool(d.get("is_classification", False)), lang=guess_lang(inst)))
    if language not in ("all", "", None):
        tasks = [t for t in tasks if t.lang == language]
    if len(tasks) < 3:
        raise UserError(
            f"{path} has {len(tasks)} seed tasks in language {language!r}: the prompt shows 3, "
            "so use a seed file with at least 3 (or language=all)"
        )
    return tasks
