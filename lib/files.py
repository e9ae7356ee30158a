"""Files that are either whole or absent: write to a temporary sibling, fsync, rename.

A reader (or a resumed run after `kill -9`) never sees half a file; the previous version
stays in place until the new one is complete.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable


def parse_jsonl(text: str, where: str, fix: str) -> list:
    """Every non-blank line is one JSON value; the first bad line is one UserError naming
    `where:line` and the `fix`. Lines end at "\\n" only: a U+2028 inside a JSON string (which
    str.splitlines would break on) is text, not a line break."""
    from lib.errors import UserError

    out = []
    for n, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"{where}:{n} is not valid JSON: {fix}") from None
    return out


def atomic_write_via(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """`write(tmp_name)` fills a temporary sibling (for writers that want a file name, such
    as matplotlib's savefig); it is fsynced and renamed over `path` only once complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    atomic_write_via(path, lambda tmp: Path(tmp).write_bytes(raw))


def atomic_write_json(path: str | os.PathLike, obj, *, indent: int | None = 1) -> None:
    atomic_write(path, json.dumps(obj, ensure_ascii=False, indent=indent, default=str))


def atomic_write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records one JSON object a line; returns how many."""
    lines = [json.dumps(rec, ensure_ascii=False) + "\n" for rec in records]
    atomic_write(path, "".join(lines))
    return len(lines)
