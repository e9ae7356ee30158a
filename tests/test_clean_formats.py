"""Reading, validating, converting and writing Alpaca / ShareGPT data.

    .venv/bin/pytest tests/test_clean_formats.py -q
"""
from __future__ import annotations

import json

import pytest

from lib.clean import alpaca_to_sharegpt, read_records, sharegpt_to_alpaca, write_dataset
from lib.core.errors import UserError

ALPACA = [
    {"id": "a1", "instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "source": "s", "lang": "en"},
    {"instruction": "Say hello.", "output": "Hello!"},  # no id/input/source: filled in
]
CONV = {"id": "c1", "conversations": [
    {"from": "system", "value": "Be brief."},
    {"from": "user", "value": "Hi"}, {"from": "assistant", "value": "Hello."},
    {"from": "human", "value": "Bye"}, {"from": "gpt", "value": "Goodbye."}]}


def test_jsonl_json_and_dataset_read_the_same(tmp_path):
    jl = tmp_path / "a.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in ALPACA) + "\n\n")  # a trailing blank line is fine
    js = tmp_path / "a.json"
    js.write_text(json.dumps(ALPACA))
    from_jl, bad, fmt = read_records(jl)
    assert fmt == "alpaca" and not bad and len(from_jl) == 2
    assert from_jl[1] == {"id": "rec-2", "instruction": "Say hello.", "input": "", "output": "Hello!",
                          "source": "", "lang": ""}
    from_js, _, _ = read_records(js)
    assert from_js == from_jl
    write_dataset(tmp_path / "ds", from_jl)
    from_ds, _, fmt = read_records(tmp_path / "ds")
    assert fmt == "alpaca" and from_ds == from_jl


def test_sharegpt_roles_normalised(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps([CONV]))
    recs, _, fmt = read_records(p)
    assert fmt == "sharegpt"
    assert [t["from"] for t in recs[0]["conversations"]] == ["system", "human", "gpt", "human", "gpt"]


def test_malformed_line_is_a_user_error_with_file_and_line(tmp_path):
    p = tmp_path / "gen.jsonl"
    p.write_text(json.dumps(ALPACA[0]) + "\n" + '{"instruction": "cut off' + "\n" + json.dumps(ALPACA[1]) + "\n")
    with pytest.raises(UserError, match=r"gen\.jsonl:2: invalid JSON.*on_error='report'"):
        read_records(p)
    recs, bad, _ = read_records(p, on_error="report")
    assert len(recs) == 2 and [(b.line, b.file) for b in bad] == [(2, str(p))]


@pytest.mark.parametrize("obj,msg", [
    ({"instruction": "x"}, "missing field"),
    ({"instruction": "x", "output": 3}, "must be a string"),
    ({"conversations": "hi"}, "conversations"),
    ({"conversations": [{"from": "robot", "value": "x"}]}, "unknown role"),
])
def test_schema_errors_name_the_field(tmp_path, obj, msg):
    p = tmp_path / "x.jsonl"
    fmt = "sharegpt" if "conversations" in obj else "alpaca"
    p.write_text(json.dumps(obj) + "\n")
    with pytest.raises(UserError, match=msg):
        read_records(p, fmt)


def test_missing_input_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="does not exist: run the generate notebook"):
        read_records(tmp_path / "nope.jsonl")


def test_conversion_both_ways():
    rec = {"id": "a1", "instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "source": "s", "lang": "en"}
    conv = alpaca_to_sharegpt(rec)
    assert conv["conversations"] == [{"from": "human", "value": "Add the numbers.\n\n2 and 3"},
                                     {"from": "gpt", "value": "5"}]
    back = sharegpt_to_alpaca(conv)
    assert back == [{"id": "a1_t0", "instruction": "Add the numbers.\n\n2 and 3", "input": "", "output": "5",
                     "source": "s", "lang": "en"}]
    # multi-turn: one Alpaca record per exchange, the system turn is not an instruction
    from lib.clean.formats import validate_sharegpt
    pairs = sharegpt_to_alpaca(validate_sharegpt(CONV))
    assert [(p["instruction"], p["output"]) for p in pairs] == [("Hi", "Hello."), ("Bye", "Goodbye.")]


def test_jsonl_under_a_json_name_and_unicode_line_separators(tmp_path):
    # U+2028 inside a string is legal JSON; str.splitlines() would cut the record there.
    recs = [{"instruction": "Quote it.", "input": "", "output": "line one\u2028line two"},
            {"instruction": "Say hi.", "input": "", "output": "hi"}]
    p = tmp_path / "gen.json"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    got, bad, _ = read_records(p)
    assert not bad and [r["output"] for r in got] == ["line one\u2028line two", "hi"]


def test_encoding_and_empty_inputs_are_one_clear_line(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(json.dumps({"instruction": "x", "output": "Café"}, ensure_ascii=False).encode("latin-1") + b"\n")
    with pytest.raises(UserError, match=r"latin1\.jsonl:1: not UTF-8 text \(byte 0xe9.*save the file as UTF-8"):
        read_records(p)
    p16 = tmp_path / "u16.jsonl"
    p16.write_bytes("\ufeff".encode("utf-16-le") + json.dumps(ALPACA[0]).encode("utf-16-le"))
    with pytest.raises(UserError, match="UTF-16"):
        read_records(p16)
    bom = tmp_path / "bom.jsonl"  # a UTF-8 byte-order mark (Windows editors) is fine
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(ALPACA[0]).encode() + b"\n")
    assert read_records(bom)[0][0]["id"] == "a1"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="holds no records"):
        read_records(empty)
