"""Alpaca records and ShareGPT conversations: read, validate, convert, write.

Two shapes travel between phases (see docs/architecture.md):

    Alpaca    {"id", "instruction", "input", "output", "source", "lang"}
    ShareGPT  {"id", "conversations": [{"from": "human"|"gpt"|"system", "value"}], "source"?, "lang"?}

Readers accept JSON (a list of objects), JSONL (one object a line) and a Hugging Face
dataset directory (`save_to_disk` output, or a local folder `load_dataset` understands).

A record that does not parse is never skipped silently. With `on_error="raise"` (the
default) the first one stops the read with one line naming `file:line` and the fix; with
`on_error="report"` every bad record is returned as a `Malformed` entry so the cleaning
report can count and show it, and the good records go on.

    python -m lib.clean.formats to-sharegpt data/clean.jsonl out.jsonl   # convert a file
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from lib.core.errors import UserError
from lib.core.files import atomic_write_jsonl, publish_dir
from lib.core.text import lone_surrogate

FORMATS = ("alpaca", "sharegpt")
ALPACA_FIELDS = ("instruction", "input", "output")
# Names other tools use for the same roles. Everything is normalised to FastChat's names.
ROLE_ALIASES = {
    "human": "human", "user": "human",
    "gpt": "gpt", "assistant": "gpt", "chatgpt": "gpt", "bard": "gpt", "bing": "gpt", "model": "gpt",
    "system": "system",
}


@dataclass
class Malformed:
    """A record that could not be read: where it is and what is wrong with it."""

    file: str
    line: int  # 1-based line in a JSONL file, 1-based index in a JSON list or dataset
    error: str
    text: str = ""  # the first characters of the offending line, for the report

    def where(self) -> str:
        return f"{self.file}:{self.line}"


# ----------------------------------------------------------------------------- validation

def detect_format(record: dict) -> str:
    """'sharegpt' when the record holds a conversation, else 'alpaca'."""
    return "sharegpt" if "conversations" in record else "alpaca"


def validate_alpaca(obj, index: int = 0) -> dict:
    """Return a normalised Alpaca record or raise ValueError saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "instruction" not in obj or "output" not in obj:
        missing = [k for k in ("instruction", "output") if k not in obj]
        raise ValueError(f"missing field(s) {', '.join(missing)} (an Alpaca record needs instruction, input, output)")
    rec = dict(obj)
    for key in ALPACA_FIELDS:
        value = rec.get(key)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValueError(f"field {key!r} must be a string, got {type(value).__name__}")
        _check_text(value, f"field {key!r}")
        rec[key] = value
    rec["id"] = str(rec.get("id") if rec.get("id") not in (None, "") else f"rec-{index}")
    rec["source"] = str(rec.get("source") or "")
    rec["lang"] = str(rec.get("lang") or "")
    return rec


def validate_sharegpt(obj, index: int = 0) -> dict:
    """Return a ShareGPT record with role names normalised, or raise ValueError.

    Only the *shape* is checked here (a list of {from, value} with known roles); the order
    of the roles is a cleaning question (`lib.clean.sharegpt.fix_roles`), counted there.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    conv = obj.get("conversations")
    if not isinstance(conv, list):
        raise ValueError("missing or non-list field 'conversations' (ShareGPT needs conversations: [{from, value}])")
    turns = []
    for k, turn in enumerate(conv):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise ValueError(f"turn {k} must be an object with 'from' and 'value'")
        role = ROLE_ALIASES.get(str(turn["from"]).strip().lower())
        if role is None:
            raise ValueError(f"turn {k} has unknown role {turn['from']!r} (use human, gpt or system)")
        value = turn["value"]
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValueError(f"turn {k} value must be a string, got {type(value).__name__}")
        _check_text(value, f"turn {k} value")
        turns.append({"from": role, "value": value})
    rec = {k: v for k, v in obj.items() if k != "conversations"}
    rec["id"] = str(obj.get("id") if obj.get("id") not in (None, "") else f"conv-{index}")
    rec["conversations"] = turns
    rec["source"] = str(obj.get("source") or "")
    rec["lang"] = str(obj.get("lang") or "")
    return rec


def _check_text(value: str, what: str) -> None:
    bad = lone_surrogate(value)
    if bad:
        raise ValueError(f"{what} holds a lone surrogate ({bad}, half of a UTF-16 pair): fix the text's encoding")


VALIDATORS = {"alpaca": validate_alpaca, "sharegpt": validate_sharegpt}


# ----------------------------------------------------------------------------- reading

def _decode(data: bytes, first: bool) -> str:
    """UTF-8 text of one line or file, or a ValueError that says how to fix the encoding."""
    if first and data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ValueError("the file is UTF-16 (byte-order mark), not UTF-8: save it as UTF-8")
    try:
        return data.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte 0x{data[e.start]:02x} at column {e.start + 1}): "
                         "save the file as UTF-8") from None


def _raw_objects(path: Path) -> Iterator[tuple[int, object, str]]:
    """Yield (line-or-index, parsed object or a ValueError, raw text) from one file or dataset."""
    if path.is_dir():
        yield from _dataset_objects(path)
        return
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if path.suffix == ".json" or (head.startswith(b"[") and path.suffix != ".jsonl"):
        raw = path.read_bytes()
        try:
            data = json.loads(_decode(raw, first=True))
        except ValueError as e:
            if isinstance(e, json.JSONDecodeError):
                if e.msg == "Extra data" and e.lineno >= 2:
                    data = None  # one object a line under a .json name: read it as JSONL below
                else:  # a JSON document is all-or-nothing: report where the parser stopped
                    yield e.lineno, ValueError(f"invalid JSON ({e.msg})"), ""
                    return
            else:
                yield 1, e, ""
                return
        if data is not None:
            if isinstance(data, dict) and isinstance(data.get("data"), list):
                data = data["data"]  # {"data": [...]} as some exports write
            if not isinstance(data, list):
                yield 1, ValueError("a .json input must hold a list of records"), ""
                return
            for i, obj in enumerate(data, 1):
                yield i, obj, ""
            return
    # Binary lines split on b"\n" only: U+2028 inside a JSON string is not a line break.
    with open(path, "rb") as f:
        for n, data in enumerate(f, 1):
            try:
                line = _decode(data, first=n == 1)
            except ValueError as e:
                yield n, e, data[:200].decode("utf-8", "replace")
                continue
            if not line.strip():
                continue  # blank lines are formatting, not records
            try:
                yield n, json.loads(line), line
            except json.JSONDecodeError as e:
                yield n, ValueError(f"invalid JSON ({e.msg} at column {e.colno})"), line


def _dataset_objects(path: Path) -> Iterator[tuple[int, object, str]]:
    import datasets

    try:
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            ds = datasets.load_from_disk(str(path))
        else:
            ds = datasets.load_dataset(str(path))
    except Exception as e:  # noqa: BLE001 - any loader failure is the user's path
        raise UserError(f"cannot read the dataset at {path} ({type(e).__name__}: {e}): "
                        "pass a JSON/JSONL file or a folder written by Dataset.save_to_disk") from None
    if isinstance(ds, datasets.DatasetDict):
        split = "train" if "train" in ds else next(iter(ds))
        ds = ds[split]
    for i, obj in enumerate(ds, 1):
        yield i, obj, ""


def read_records(path: str | os.PathLike, fmt: str = "auto", *, on_error: str = "raise",
                 ) -> tuple[list[dict], list[Malformed], str]:
    """Read and validate every record in `path`. Returns (records, malformed, format).

    fmt: "alpaca", "sharegpt" or "auto" (decided by the first record that parses).
    on_error: "raise" -> UserError naming file:line on the first bad record;
              "report" -> bad records come back in `malformed` and are counted by the caller.
    """
    if on_error not in ("raise", "report"):
        raise UserError(f"on_error={on_error!r} is not known: use 'raise' or 'report'")
    if fmt not in ("auto", *FORMATS):
        raise UserError(f"format {fmt!r} is not known: use one of auto, {', '.join(FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise UserError(f"input {path} does not exist: run the generate notebook first or pass input_path")
    records: list[dict] = []
    malformed: list[Malformed] = []
    for n, obj, raw in _raw_objects(path):
        if fmt == "auto" and not isinstance(obj, Exception) and isinstance(obj, dict):
            fmt = detect_format(obj)
        try:
            if isinstance(obj, Exception):
                raise obj
            rec = VALIDATORS[fmt if fmt != "auto" else detect_format(obj if isinstance(obj, dict) else {})](obj, n)
        except ValueError as e:
            bad = Malformed(str(path), n, str(e), raw.strip()[:200])
            if on_error == "raise":
                raise UserError(f"{bad.where()}: {bad.error}: fix or delete that record, "
                                "or clean with on_error='report' to drop and count it") from None
            malformed.append(bad)
            continue
        records.append(rec)
    if not records and not malformed:
        raise UserError(f"{path} holds no records: run the generate notebook first or point input_path at your data")
    return records, malformed, (fmt if fmt != "auto" else "alpaca")


# ----------------------------------------------------------------------------- conversion

def alpaca_to_sharegpt(rec: dict) -> dict:
    """One Alpaca record -> a two-turn conversation (the input follows the instruction)."""
    prompt = rec["instruction"].strip()
    if rec.get("input", "").strip():
        prompt = f"{prompt}\n\n{rec['input'].strip()}"
    out = {"id": rec["id"], "conversations": [{"from": "human", "value": prompt},
                                              {"from": "gpt", "value": rec["output"]}]}
    for key in ("source", "lang"):
        if rec.get(key):
            out[key] = rec[key]
    return out


def sharegpt_to_alpaca(conv: dict) -> list[dict]:
    """A conversation -> one Alpaca record per (human, gpt) exchange.

    Alpaca has no place for earlier turns, so each exchange stands alone; multi-turn
    context is kept in the ShareGPT output (`clean_conversations.jsonl`) for chat training.
    A system turn is not an instruction and is left out. Turns are expected in order
    (run `fix_roles` first); a human turn with no answer yields nothing.
    """
    out = []
    turns = conv["conversations"]
    k = 0
    for i in range(len(turns) - 1):
        if turns[i]["from"] == "human" and turns[i + 1]["from"] == "gpt":
            out.append({"id": f"{conv['id']}_t{k}", "instruction": turns[i]["value"], "input": "",
                        "output": turns[i + 1]["value"], "source": conv.get("source", ""),
                        "lang": conv.get("lang", "")})
            k += 1
    return out


# ----------------------------------------------------------------------------- writing

def write_dataset(path: str | os.PathLike, records: list[dict], fmt: str = "alpaca") -> None:
    """Save records as a `datasets` dataset (save_to_disk) atomically into `path`."""
    import datasets

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if records:
        ds = datasets.Dataset.from_list(records)
    else:  # an empty result keeps its columns so readers still see the schema
        cols = ["id", "instruction", "input", "output", "source", "lang"] if fmt == "alpaca" else ["id", "conversations"]
        ds = datasets.Dataset.from_dict({c: [] for c in cols})
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    quiet = not datasets.are_progress_bars_disabled()
    if quiet:  # a save bar per call clutters notebooks; the cleaning bar already shows progress
        datasets.disable_progress_bars()
    try:
        ds.save_to_disk(str(tmp))
        publish_dir(tmp, path)
    finally:
        if quiet:
            datasets.enable_progress_bars()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="convert between Alpaca and ShareGPT JSONL")
    ap.add_argument("direction", choices=["to-sharegpt", "to-alpaca"])
    ap.add_argument("src")
    ap.add_argument("dst")
    args = ap.parse_args(argv)
    recs, _, fmt = read_records(args.src)
    if args.direction == "to-sharegpt":
        out = [alpaca_to_sharegpt(r) for r in recs] if fmt == "alpaca" else recs
    else:
        out = [a for c in recs for a in sharegpt_to_alpaca(c)] if fmt == "sharegpt" else recs
    print(f"wrote {atomic_write_jsonl(args.dst, out)} records to {args.dst}")


if __name__ == "__main__":
    from lib.core.errors import cli

    cli(_main)()
