"""Append-only JSONL stores keyed by a tuple of fields: the memory of paid-for work.

Answers and judgments cost money (or CPU minutes), so they are written one line at a time,
flushed and fsync'ed before the next call starts. A re-run reads the file, skips every key
that is already done and appends only what is missing, so it neither repeats a call nor
writes a duplicate row. A process killed mid-write can leave a torn last line; opening the
store cuts the file back to its last complete line (that record was never finished, so
nothing that was paid for and recorded is lost).

    store = JsonlStore(run_dir / "eval" / "judgments.jsonl", key=("question_id", "model_a", "model_b", "order", "judge"))
    if not store.done(key): store.append(record)
"""
from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Callable, Iterable

from lib.files import atomic_write


class JsonlStore:
    def __init__(self, path: str | os.PathLike, key: Iterable[str],
                 is_done: Callable[[dict], bool] | None = None):
        self.path = Path(path)
        self.key_fields = tuple(key)
        # A record may exist but not count as done (e.g. a judge call that failed on the
        # network): a re-run tries that key again and the newer row supersedes the older.
        self.is_done = is_done or (lambda rec: True)
        self._lock = threading.Lock()
        self._latest: dict[tuple, dict] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_torn_tail()
        self._load()

    def key_of(self, rec: dict) -> tuple:
        return tuple(_hashable(rec.get(f)) for f in self.key_fields)

    def _repair_torn_tail(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
                f.flush()
                os.fsync(f.fileno())

    def _load(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                rec = json.loads(line)
                k = self.key_of(rec)
                old = self._latest.get(k)
                # A done record is never replaced by a later one that is not done.
                if old is None or not self.is_done(old) or self.is_done(rec):
                    self._latest[k] = rec

    def get(self, key: tuple) -> dict | None:
        return self._latest.get(tuple(_hashable(k) for k in key))

    def done(self, key: tuple) -> bool:
        rec = self.get(key)
        return rec is not None and self.is_done(rec)

    def append(self, rec: dict) -> None:
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            k = self.key_of(rec)
            old = self._latest.get(k)
            if old is None or not self.is_done(old) or self.is_done(rec):
                self._latest[k] = rec

    def records(self) -> list[dict]:
        """The latest row per key, in first-seen order."""
        return list(self._latest.values())

    def __len__(self) -> int:
        return len(self._latest)


def _hashable(v):
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


def json_safe(obj):
    """NaN/inf -> None, recursively: results.json stays strict JSON that any reader accepts."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write strict JSON (NaN as null) to a temporary file beside `path`, fsync, then rename over it."""
    atomic_write(path, json.dumps(json_safe(obj), ensure_ascii=False, indent=2, default=str, allow_nan=False) + "\n")
