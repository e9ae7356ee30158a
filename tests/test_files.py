"""Atomic files: whole or absent, the old version kept until the new one is complete."""
import json
import os
import stat

import pytest

from lib.core.errors import UserError
from lib.core.files import (COMPLETE, AppendLog, atomic_write, atomic_write_json, atomic_write_jsonl, atomic_write_via,
                       is_complete, parse_jsonl, publish_dir, read_json, read_log, repair_torn_tail)


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


def test_publish_dir_marks_the_new_directory_and_replaces_the_old_one_whole(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "stale.bin").write_bytes(b"old")
    new = tmp_path / ".model-build"
    (new / "sub").mkdir(parents=True)
    (new / "sub" / "w.bin").write_bytes(b"new")
    os.chmod(new, 0o700)  # as mkdtemp makes it
    assert publish_dir(new, final, note="v2 from test\n") == final
    assert is_complete(final) and (final / COMPLETE).read_text() == "v2 from test\n"
    assert sorted(p.name for p in final.rglob("*")) == [COMPLETE, "sub", "w.bin"]  # nothing of the old one
    assert os.listdir(tmp_path) == ["model"]  # no build or set-aside directory left
    assert stat.S_IMODE(final.stat().st_mode) & stat.S_IRGRP  # an ordinary directory, not mkdtemp's 0700


def test_parse_jsonl_keeps_u2028_inside_strings_and_names_the_bad_line():
    text = json.dumps({"t": "a\u2028b"}, ensure_ascii=False) + "\n\n" + '{"ok": 2}\n'
    assert parse_jsonl(text, "q.jsonl", "fix it") == [{"t": "a\u2028b"}, {"ok": 2}]
    with pytest.raises(UserError, match=r"^q.jsonl:3 is not valid JSON: fix it$"):
        parse_jsonl('{"a": 1}\n\n{broken\n', "q.jsonl", "fix it")


def test_the_one_json_rule_is_strict_json_with_nan_as_null(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_json(p, {"x": float("nan"), "y": [float("inf"), 0.5], "中": "文"})
    text = p.read_text(encoding="utf-8")
    assert text.endswith("\n") and "NaN" not in text and "Infinity" not in text and "中" in text
    assert json.loads(text) == {"x": None, "y": [None, 0.5], "中": "文"}
    assert read_json(p) == json.loads(text) and read_json(tmp_path / "none.json", default={}) == {}


def test_the_one_torn_line_policy_for_append_only_logs(tmp_path):
    """A kill mid-write leaves a torn tail: readers skip it, the next appender cuts it off
    (a newline-less tail, and a complete last line that does not parse), nothing else moves."""
    p = tmp_path / "log.jsonl"
    with AppendLog(p) as log:
        log.append({"n": 1})
        log.append_many([{"n": 2}, {"t": "中文"}])
    with open(p, "ab") as f:
        f.write(b'{"n": 3, "half')
    assert list(read_log(p)) == [{"n": 1}, {"n": 2}, {"t": "中文"}]
    assert repair_torn_tail(p) == len(b'{"n": 3, "half')
    with open(p, "ab") as f:
        f.write(b'{"garbled\n')
    with AppendLog(p) as log:  # opening for append repairs
        log.append({"n": 4})
    assert [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()] == [
        {"n": 1}, {"n": 2}, {"t": "中文"}, {"n": 4}]
    assert repair_torn_tail(p) == 0
