"""Atomic files: whole or absent, the old version kept until the new one is complete."""
import json
import os
import stat

import pytest

from lib.errors import UserError
from lib.files import atomic_write, atomic_write_json, atomic_write_jsonl, atomic_write_via, parse_jsonl


def test_jsonl_round_trip_and_ordinary_permissions(tmp_path):
    p = tmp_path / "sub" / "x.jsonl"
    assert atomic_write_jsonl(p, [{"a": 1}, {"b": "中文"}]) == 2
    assert [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()] == [{"a": 1}, {"b": "中文"}]
    mode = stat.S_IMODE(p.stat().st_mode)
    assert mode & stat.S_IRGRP, oct(mode)  # not mkstemp's private 0600
    assert [f.name for f in p.parent.iterdir()] == ["x.jsonl"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "state.json"
    atomic_write_json(p, {"v": 1})

    def records():
        yield {"ok": 1}
        raise RuntimeError("killed mid-way")

    with pytest.raises(RuntimeError):
        atomic_write_jsonl(p, records())
    assert json.loads(p.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["state.json"]


def test_bytes_and_text(tmp_path):
    atomic_write(tmp_path / "b", b"\x00\x01")
    atomic_write(tmp_path / "t", "é")
    assert (tmp_path / "b").read_bytes() == b"\x00\x01" and (tmp_path / "t").read_text(encoding="utf-8") == "é"


def test_a_writer_that_fails_half_way_keeps_the_old_file(tmp_path):
    p = tmp_path / "chart.png"
    atomic_write(p, b"old")

    def half(tmp):
        with open(tmp, "wb") as f:
            f.write(b"new but incomp")
        raise OSError(27, "File too large")  # what RLIMIT_FSIZE / a full disk raises mid-write

    with pytest.raises(OSError):
        atomic_write_via(p, half)
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["chart.png"]
    atomic_write_via(p, lambda tmp: open(tmp, "wb").write(b"new"))
    assert p.read_bytes() == b"new"


def test_parse_jsonl_keeps_u2028_inside_strings_and_names_the_bad_line():
    text = json.dumps({"t": "a\u2028b"}, ensure_ascii=False) + "\n\n" + '{"ok": 2}\n'
    assert parse_jsonl(text, "q.jsonl", "fix it") == [{"t": "a\u2028b"}, {"ok": 2}]
    with pytest.raises(UserError, match=r"^q.jsonl:3 is not valid JSON: fix it$"):
        parse_jsonl('{"a": 1}\n\n{broken\n', "q.jsonl", "fix it")
