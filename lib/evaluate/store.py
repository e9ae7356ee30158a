"""Append-only JSONL stores keyed by a tuple of fields: the memory of paid-for work.

Answers and judgments cost money (or CPU minutes), so they are written one line at a time,
flushed and fsync'ed before the next call starts. A re-run reads the file, skips every key
that is already done and appends only what is missing, so it neither repeats a call nor
writes a duplicate row. The raw file is an append-only log under lib/core/files.py's one rule
(one write + fsync per record; a torn last line is cut off when the store opens: that
record was never finished, so nothing paid for and recorded is lost). What this module adds
is the key: the latest row per key, and "done" rows that a later failed try cannot replace.

    store = JsonlStore(run_dir / "eval" / "judgments.jsonl", key=("question_id", "model_a", "model_b", "order", "judge"))
    if not store.done(key): store.append(record)
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Iterable

from lib.core.files import AppendLog, read_log, repair_torn_tail


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
        repair_torn_tail(self.path)
        for rec in read_log(self.path):
            self._take(rec)

    def key_of(self, rec: dict) -> tuple:
        return tuple(_hashable(rec.get(f)) for f in self.key_fields)

    def _take(self, rec: dict) -> None:
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
        with self._lock:
            with AppendLog(self.path, repair=False) as log:  # repaired once, when the store opened
                log.append(rec)
            self._take(rec)

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
