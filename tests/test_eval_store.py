"""Append-only judgments: a re-run neither duplicates nor loses; torn lines are repaired."""
import json

from lib.evaluate.judge import JUDGMENT_KEY, judgments_store
from lib.evaluate.store import JsonlStore
from lib.core.files import atomic_write_json


def _j(q, order, status="ok", **kw):
    return {"kind": "pairwise", "question_id": q, "model_a": "a", "model_b": "b", "order": order, "turn": None,
            "judge": "j", "status": status, **kw}


def test_resume_neither_duplicates_nor_loses(tmp_path):
    path = tmp_path / "judgments.jsonl"
    s = judgments_store(path)
    s.append(_j("q1", "ab", score_a=8))
    s.append(_j("q1", "ba", status="error"))  # a network failure: to be retried
    s.append(_j("q2", "ab", status="unparsed"))  # reported, not retried by default
    again = judgments_store(path)
    assert len(again) == 3
    assert again.done(("pairwise", "q1", "a", "b", "ab", None, "j"))
    assert not again.done(("pairwise", "q1", "a", "b", "ba", None, "j"))
    assert again.done(("pairwise", "q2", "a", "b", "ab", None, "j"))
    again.append(_j("q1", "ba", score_a=3))  # the retry succeeds
    third = judgments_store(path)
    assert len(third) == 3 and third.get(("pairwise", "q1", "a", "b", "ba", None, "j"))["score_a"] == 3
    # A later failure never replaces a done judgment.
    third.append(_j("q1", "ab", status="error"))
    assert judgments_store(path).get(("pairwise", "q1", "a", "b", "ab", None, "j"))["score_a"] == 8
    lines = path.read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(x) for x in lines)


def test_torn_tail_is_cut_back(tmp_path):
    path = tmp_path / "a.jsonl"
    s = JsonlStore(path, ("model", "question_id"))
    s.append({"model": "m", "question_id": "q1", "turns": ["x"]})
    with open(path, "a") as f:
        f.write('{"model": "m", "question_id": "q2", "tur')  # killed mid-write
    s2 = JsonlStore(path, ("model", "question_id"))
    assert len(s2) == 1 and not s2.done(("m", "q2"))
    s2.append({"model": "m", "question_id": "q2", "turns": ["y"]})
    assert len(JsonlStore(path, ("model", "question_id"))) == 2
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_key_fields_and_atomic_json(tmp_path):
    assert JUDGMENT_KEY == ("kind", "question_id", "model_a", "model_b", "order", "turn", "judge")
    out = tmp_path / "r" / "results.json"
    atomic_write_json(out, {"x": 1, "中": "文", "ci": [float("nan"), 0.5]})
    assert json.loads(out.read_text(encoding="utf-8")) == {"x": 1, "中": "文", "ci": [None, 0.5]}
    assert [p.name for p in out.parent.iterdir()] == ["results.json"]
