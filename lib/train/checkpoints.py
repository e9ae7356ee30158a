"""Checkpoints that survive preemption.

Trainer writes `checkpoint-<step>/` into the checkpoint directory (in the cloud a mounted
bucket that outlives the machine). A checkpoint counts only once `.complete` is in it; the
marker is written by rank 0 after every rank finished writing its part (a barrier) and
after the files are fsync'ed. On start, training resumes from the newest complete
checkpoint; newer, incomplete ones (killed mid-write) are moved aside, never read.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

MARKER = ".complete"  # same name as lib.model.COMPLETE: one meaning across the project
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_complete(path: str | os.PathLike, note: str = "") -> None:
    path = Path(path)
    _fsync_tree(path)
    tmp = path / (MARKER + ".tmp")
    with open(tmp, "w") as f:
        f.write(note or f"complete at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / MARKER)


def is_complete(path: str | os.PathLike) -> bool:
    return (Path(path) / MARKER).is_file()


def checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CKPT.match(p.name))]
    return sorted(found)


def latest_complete(root: str | os.PathLike) -> Path | None:
    done = [p for _, p in checkpoints(root) if is_complete(p)]
    return done[-1] if done else None


def set_aside_incomplete(root: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Move incomplete checkpoints out of Trainer's way (it would otherwise write into them
    or rotate a complete one away). Kept, renamed, for a post-mortem; returns (old, new) paths."""
    moved = []
    for step, p in checkpoints(root):
        if not is_complete(p):
            dest = p.with_name(f"incomplete-{p.name}-{int(time.time())}")
            os.replace(p, dest)
            moved.append((p, dest))
    return moved


def publish_dir(tmp: str | os.PathLike, final: str | os.PathLike, note: str = "") -> Path:
    """Mark a fully written directory complete and move it into place atomically."""
    tmp, final = Path(tmp), Path(final)
    mark_complete(tmp, note)
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final
