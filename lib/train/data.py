"""The training data stage: which records train and which are held out.

Light on purpose (no torch): the launch plan counts exactly what 03_train will train with
these same functions, on a machine without a GPU stack.
"""
from __future__ import annotations

import hashlib
import json
import math
import os

from lib.core.errors import UserError
from lib.core.files import read_jsonl


def read_training_records(path: str | os.PathLike) -> list[dict]:
    """Records of clean.jsonl (or a train/held-out split of it); strict: every line must parse
    and be a JSON object (a record; what each record holds is the encoder's to count)."""
    fix = "run the clean phase first (it writes data/clean.jsonl)"
    records = read_jsonl(path, what="training data", fix=fix)
    for n, rec in enumerate(records, 1):
        if not isinstance(rec, dict):
            raise UserError(f"training data {path}: record {n} is a {type(rec).__name__}, not a JSON object: {fix}")
    return records


def _key(rec: dict, i: int, seed: int) -> str:
    ident = str(rec.get("id") or json.dumps(rec, sort_keys=True, ensure_ascii=False))
    return hashlib.sha256(f"{seed}:{ident}".encode()).hexdigest()


def split_heldout(records: list[dict], fraction: float = 0.1, minimum: int = 4, seed: int = 0):
    """Deterministic held-out slice: the same records stay out on every run and resume,
    chosen by a hash of their id (not by file order, which cleaning may change)."""
    if not 0 <= fraction < 1:
        raise UserError(f"heldout_fraction={fraction} must be in [0, 1): e.g. 0.1")
    n = len(records)
    # `minimum` keeps the held-out loss meaningful; on tiny data it never takes more than half.
    k = 0 if fraction == 0 else max(min(minimum, n // 2), math.ceil(n * fraction))
    if k and n - k < 1:
        raise UserError(f"only {n} records: too few to hold out {k} and still train; generate more data "
                        "or lower heldout_fraction")
    order = sorted(range(n), key=lambda i: _key(records[i], i, seed))
    held = set(order[:k])
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]
