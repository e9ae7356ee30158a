"""Append-only JSONL files that survive `kill -9`, and atomic JSON state files.

Each record is one `write()` of one line on an O_APPEND descriptor, followed by fsync, so
a kill leaves at most a torn last line. `repair_tail` cuts such a line off before the
file is appended to again (its content was never acknowledged, so nothing is lost: the
request that produced it is re-done on resume).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator
from lib.files import atomic_write_json


def repair_tail(path: Path) -> int:
    """Truncate a torn (newline-less or unparsable) last line; returns bytes removed."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        keep = len(data)
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
        # A complete-looking last line can still be garbage if the kill hit between the
        # bytes and the newline of a previous writer; check it parses.
        while keep:
            start = data.rfind(b"\n", 0, keep - 1) + 1
            try:
                json.loads(data[start:keep])
                break
            except ValueError:
                keep = start
        if keep != len(data):
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        return len(data) - keep


def read_jsonl(path: Path) -> Iterator[dict]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n") and line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # only a torn tail can be unparsable; repair_tail removes it


class AppendLog:
    """An append-only JSONL file; every `append` is on disk when it returns."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: dict) -> None:
        self.append_many([record])

    def append_many(self, records: list[dict]) -> None:
        if not records:
            return
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "AppendLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_json_atomic(path: Path, obj) -> None:
    atomic_write_json(path, obj)


def read_json(path: Path, default=None):
    path = Path(path)
    if not path.exists():
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)
