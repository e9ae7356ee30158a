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
import sys
import time
from pathlib import Path

# The completeness marker and its writer live in lib.core.files (one rule for whole directories).
from lib.core.files import is_complete
from lib.train.dist import barrier

_CKPT = re.compile(r"^checkpoint-(\d+)$")


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
            os.replace(p, dest)  # a rename, not a write: if a power cut undoes it, the next start redoes it
            moved.append((p, dest))
    return moved


def step_of(checkpoint: Path) -> int:
    """The optimizer step a `checkpoint-<step>` directory holds."""
    return int(checkpoint.name.split("-")[-1])


def resume_point(root: str | os.PathLike, *, last_step: int, main: bool) -> tuple[Path | None, Path | None]:
    """(checkpoint to resume from, or None to start fresh; the same checkpoint again when it
    already holds `last_step`, i.e. training is done and only publishing is left, else None),
    once rank 0 has set the incomplete ones aside. Every rank calls it: it holds two barriers,
    so no rank lists the directory while rank 0 renames in it."""
    resume = latest_complete(root)
    finished = resume if resume is not None and step_of(resume) >= last_step else None
    barrier()
    if main:
        for old, new in set_aside_incomplete(root):
            print(f"checkpoint: set aside incomplete {old.name} as {new.name} (killed while writing)", file=sys.stderr)
        if resume:
            print(f"checkpoint: resuming from {resume}")
        if finished:
            print(f"checkpoint: {finished.name} is the last step ({last_step}); publishing it without more training")
    barrier()
    return resume, finished
