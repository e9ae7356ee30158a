"""Blind pairwise review through its Python model (lib/evaluate/review.py): simulated clicks and
key presses, the hidden A/B order, the three queue orders, replays, a torn last line, two
reviewers writing at once, and a reviewer killed (SIGKILL) in the middle of a review who resumes.

Run: .venv/bin/python -m pytest -q tests/test_eval_review.py
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.core.errors import UserError
from lib.evaluate import review
from lib.evaluate.questions import Question
from lib.evaluate.review import ReviewConfig, ReviewSession, load_votes, review_items

REPO = Path(__file__).resolve().parent.parent
PAIR = ("tuned", "base")


def _questions(n: int) -> list[Question]:
    return [Question(f"q{i}", [f"Question {i}?"], category="writing" if i % 2 else "math") for i in range(n)]


def _answers(qs) -> dict:
    # Each answer names its model, so a test can tell which one sits in slot A.
    return {m: {q.question_id: [f"{m}'s answer to {q.question_id}"] for q in qs} for m in PAIR}


def _judgment(qid, order, score_a, score_b, judge="gpt-4-0613"):
    return {"kind": "pairwise", "question_id": qid, "model_a": "tuned", "model_b": "base", "order": order,
            "turn": None, "judge": judge, "status": "ok", "score_a": score_a, "score_b": score_b, "category": "writing"}


def _session(tmp_path, n=6, reviewer="ana", order="random", judgments=None, **kw) -> ReviewSession:
    qs = _questions(n)
    items = review_items(qs, _answers(qs), [PAIR], judgments, judge="gpt-4-0613")
    return ReviewSession(items, tmp_path / "eval" / "human.jsonl", ReviewConfig(reviewer=reviewer, order=order), **kw)


def test_votes_are_blind_recorded_with_hidden_order_and_time(tmp_path):
    clock = iter([100.0, 112.5, 200.0, 230.0, 300.0, 301.0])
    s = _session(tmp_path, n=3, clock=lambda: next(clock))
    shown = s.current()
    assert set(vars(shown)) == {"question_id", "category", "question", "answer_A", "answer_B", "position", "total"}
    assert (shown.position, shown.total) == (1, 3)
    # The answer in slot A decides what "A" means; the vote records the order, the reviewer and the time.
    winner_in_a = shown.answer_A.split("'")[0]
    rec = s.vote("A", note="  A is concrete ")
    assert rec["shown"][0] == winner_in_a and set(rec["shown"]) == set(PAIR)
    assert rec["outcome"] == ("win" if winner_in_a == "tuned" else "loss")
    assert (rec["reviewer"], rec["note"], rec["seconds"], rec["choice"]) == ("ana", "A is concrete", 12.5, "A")
    assert rec["vote_id"] == review.vote_id("ana", rec["question_id"], "tuned", "base")
    s.current()
    rec2 = s.vote("both_bad")
    assert rec2["outcome"] == "tie" and rec2["seconds"] == 30.0  # "both bad" counts as a tie
    lines = (tmp_path / "eval" / "human.jsonl").read_text().splitlines()
    assert [json.loads(x)["vote_id"] for x in lines] == [rec["vote_id"], rec2["vote_id"]]
    assert s.done == 2 and s.current().position == 3


def test_each_item_gets_its_own_coin_and_keeps_it_on_resume(tmp_path):
    s = _session(tmp_path, n=40)
    orders = {it.key: tuple(s.shown_order(it)) for it in s.items}
    firsts = [o[0] for o in orders.values()]
    assert 8 < firsts.count("tuned") < 32  # both orders occur, neither model always sits in slot A
    again = _session(tmp_path, n=40)
    assert {it.key: tuple(again.shown_order(it)) for it in again.items} == orders
    other = _session(tmp_path, n=40, reviewer="bo")
    assert {it.key: tuple(other.shown_order(it)) for it in other.items} != orders  # drawn per reviewer


def test_keyboard_shortcuts_vote_skip_and_ignore(tmp_path):
    s = _session(tmp_path, n=4)
    first = s.current().question_id
    assert s.press("s") is None and s.current().question_id != first  # skip: to the end, nothing written
    assert not (tmp_path / "eval" / "human.jsonl").exists()
    assert s.press("?") is None and s.done == 0  # an unknown key does nothing
    assert s.press("b")["choice"] == "B"
    assert s.press("t")["choice"] == "tie"
    assert s.press("x")["choice"] == "both_bad"
    assert s.press("1")["choice"] == "A" and s.current() is None and s.finished
    assert [r["question_id"] for r in load_votes(s.path)][-1] == first  # the skipped item came back last
    with pytest.raises(UserError, match="nothing left to review"):
        s.vote("A")


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(UserError, match="reviewer"):
        ReviewConfig(reviewer="  ")
    with pytest.raises(UserError, match="order 'newest' is unknown"):
        ReviewConfig(reviewer="ana", order="newest")
    with pytest.raises(UserError, match="vote 'C' is unknown"):
        _session(tmp_path).vote("C")


def test_least_confident_and_disagreements_orders(tmp_path):
    judgments = [
        _judgment("q0", "ab", 9, 2), _judgment("q0", "ba", 8, 3),  # consistent win, margin 5
        _judgment("q1", "ab", 7, 5), _judgment("q1", "ba", 6, 5),  # consistent win, margin 1
        _judgment("q2", "ab", 8, 3), _judgment("q2", "ba", 3, 8),  # flips with the order: margin 0
        _judgment("q3", "ab", 2, 6),                               # one order only: unjudged
        _judgment("q4", "ab", 3, 6), _judgment("q4", "ba", 4, 6),  # consistent loss, margin 2
    ]
    s = _session(tmp_path, n=5, order="least_confident", judgments=judgments)
    assert [it.question_id for it in s.queue] == ["q3", "q2", "q1", "q4", "q0"]
    # Another reviewer disagrees with the judge on q0 (the judge's most confident verdict)...
    bo = _session(tmp_path, n=5, reviewer="bo", judgments=judgments)
    while bo.current().question_id != "q0":
        bo.skip()
    a_is_tuned = bo.shown_order(bo.queue[0])[0] == "tuned"
    assert bo.vote("B" if a_is_tuned else "A")["outcome"] == "loss"
    # ...so "disagreements" puts q0 first, then the judge's own swap disagreement.
    d = _session(tmp_path, n=5, reviewer="cy", order="disagreements", judgments=judgments)
    assert [it.question_id for it in d.queue][:2] == ["q0", "q2"]


def test_a_replayed_vote_counts_once_and_the_latest_counts(tmp_path):
    s = _session(tmp_path, n=3)
    rec = s.vote("A")
    review.append_vote(s.store, rec)  # a replay: the same line again
    assert len((tmp_path / "eval" / "human.jsonl").read_text().splitlines()) == 2
    assert len(load_votes(s.path)) == 1
    changed = {**rec, "choice": "tie", "outcome": "tie"}  # the reviewer changed their mind
    review.append_vote(s.store, changed)
    assert [v["choice"] for v in load_votes(s.path)] == ["tie"]
    assert _session(tmp_path, n=3).done == 1  # a resumed session does not show the item again


def test_a_torn_last_line_is_trimmed_and_votes_continue(tmp_path):
    s = _session(tmp_path, n=3)
    s.vote("A")
    with open(s.path, "a") as f:
        f.write('{"vote_id": "dead", "reviewer": "ana", "quest')  # a write cut by a crash
    resumed = _session(tmp_path, n=3)
    assert resumed.done == 1
    resumed.vote("B")
    assert [json.loads(x)["choice"] for x in s.path.read_text().splitlines()] == ["A", "B"]


VOTER = """
import sys, time
sys.path.insert(0, {repo!r})
from lib.evaluate.questions import Question
from lib.evaluate.review import ReviewConfig, ReviewSession, review_items
qs = [Question(f"q{{i}}", [f"Question {{i}}?"]) for i in range({n})]
answers = {{m: {{q.question_id: [m + " says " + q.question_id] for q in qs}} for m in ("tuned", "base")}}
s = ReviewSession(review_items(qs, answers, [("tuned", "base")]), {path!r}, ReviewConfig(reviewer=sys.argv[1]))
print("resumed at", s.done, flush=True)
while not s.finished:
    s.current()
    s.vote("AB"[s.done % 2], note="x" * 3000)  # long notes: several KB a line
    print("voted", s.done, flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _voter(tmp_path, reviewer: str, pause: float, n: int) -> subprocess.Popen:
    script = tmp_path / "voter.py"
    script.write_text(VOTER.format(repo=str(REPO), n=n, path=str(tmp_path / "eval" / "human.jsonl")))
    return subprocess.Popen([sys.executable, str(script), reviewer, str(pause)], stdout=subprocess.PIPE, text=True)


def test_killed_mid_review_resumes_without_losing_or_repeating_a_vote(tmp_path):
    n = 30
    p = _voter(tmp_path, "ana", 0.05, n)
    assert p.stdout.readline().startswith("resumed at 0")
    acknowledged = 0
    while acknowledged < 8:
        acknowledged = int(p.stdout.readline().split()[1])
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    # Every vote acknowledged before the kill is on disk (each is fsynced before vote() returns).
    on_disk = load_votes(tmp_path / "eval" / "human.jsonl")
    assert acknowledged <= len(on_disk) <= acknowledged + 1
    p2 = _voter(tmp_path, "ana", 0.0, n)
    out, _ = p2.communicate(timeout=120)
    assert p2.returncode == 0 and out.startswith(f"resumed at {len(on_disk)}")
    lines = (tmp_path / "eval" / "human.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert len(recs) == n and len({r["vote_id"] for r in recs}) == n  # each item once, none twice
    assert sorted(r["question_id"] for r in recs) == sorted(f"q{i}" for i in range(n))


def test_two_reviewers_write_the_same_file_at_once(tmp_path):
    n = 25
    procs = [_voter(tmp_path, name, 0.0, n) for name in ("ana", "bo")]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    lines = (tmp_path / "eval" / "human.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]  # every line whole: no two writes interleaved
    assert len(recs) == 2 * n
    assert {r["reviewer"] for r in recs} == {"ana", "bo"} and len({r["vote_id"] for r in recs}) == 2 * n


def test_widget_clicks_and_keys_go_through_the_session(tmp_path):
    pytest.importorskip("ipywidgets")  # installed with jupyter (requirements.txt)
    s = _session(tmp_path, n=3)
    w = review.ReviewWidget(s)
    assert "Item 1 of 3" in w.header.value and "tuned" not in w.header.value + w.question.value
    buttons = w.box.children[3].children
    assert [b.description for b in buttons][:2] == ["A is better [a]", "B is better [b]"]
    w.note.value = "<b>escaped</b>"
    buttons[0].click()
    assert "Item 2 of 3" in w.header.value and w.note.value == ""
    w.keys.value = "t"  # typing a shortcut key in the shortcut box
    assert w.keys.value == "" and "Item 3 of 3" in w.header.value
    votes = load_votes(s.path)
    assert [v["choice"] for v in votes] == ["A", "tie"] and votes[0]["note"] == "<b>escaped</b>"
    s.queue[0] = review.ReviewItem("q9", "x", "<script>alert(1)</script>", "tuned", "base", "a", "b")
    w.render()
    assert "<script>" not in w.question.value and "&lt;script&gt;" in w.question.value


# ----------------------------------------------------------------------------- 07_review.ipynb
def make_reviewed_run(run_dir: Path, n: int = 6) -> None:
    """A run directory as 04_evaluate leaves it (answers, judgments, results.json on own_en) plus
    votes by two reviewers, written through the project's own stores."""
    from lib.evaluate.answers import ANSWER_KEY
    from lib.evaluate.judge import judgments_store
    from lib.evaluate.questions import load_question_set
    from lib.evaluate.results import summarize
    from lib.evaluate.store import JsonlStore
    from lib.core.files import atomic_write_json

    qset = load_question_set("own_en", max_questions=n)
    ev = run_dir / "eval"
    answers = JsonlStore(ev / "answers.jsonl", ANSWER_KEY)
    for m in PAIR:
        for q in qset.questions:
            answers.append({"model": m, "question_id": q.question_id, "turns": [f"{m} answers: {t[:40]}" for t in q.turns]})
    judge = "smollm2-135m-instruct@test"
    store = judgments_store(ev / "judgments.jsonl")
    for i, q in enumerate(qset.questions):
        for order, (sa, sb) in zip(("ab", "ba"), [(8, 3), (7, 4)] if i % 3 else [(8, 3), (3, 8)]):
            store.append({**_judgment(q.question_id, order, sa, sb, judge=judge), "category": q.category})
    table = {m: {q.question_id: [f"{m} answers"] * len(q.turns) for q in qset.questions} for m in PAIR}
    atomic_write_json(ev / "results.json", summarize(qset, [], table, store.records(), pairs=[PAIR],
                                                     judge={"name": judge, "local": True}, n_boot=50))
    items = review_items(qset.questions, table, [PAIR], store.records(), judge=judge)
    clock = itertools.count(1_765_000_000, 23).__next__  # a reviewer reads each item for 23 s
    for name, k in (("ana", n), ("bo", n // 2)):
        s = ReviewSession(items, ev / "human.jsonl", ReviewConfig(reviewer=name, seed=1), clock=clock)
        for j in range(k):
            s.current()
            s.vote(("A", "B", "tie", "both_bad")[(j + len(name)) % 4], note=f"{name} {j}")


def test_notebook_executes_with_the_widget_and_summaries(tmp_path):
    import nbformat
    import papermill

    run_dir = tmp_path / "run"
    make_reviewed_run(run_dir)
    out = tmp_path / "07_review.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "07_review.ipynb"), str(out), cwd=str(REPO),
                               kernel_name="python3", progress_bar=False,
                               parameters=dict(run_dir=str(run_dir), reviewer="cy", order="disagreements", n_boot=200))
    ev = run_dir / "eval"
    rep = json.loads((ev / "review.json").read_text())
    assert rep["reviewers"] == ["ana", "bo"] and rep["votes"] == 9
    assert rep["judge_vs_human"]["compared"] == 9 and rep["human_vs_human"]["overlapping_items"] == 3
    assert {r["model"] for r in rep["ratings"]["judge"]} == set(PAIR)
    assert all(not r["comparable"] for r in rep["scorecard"])
    assert "a 135M local judge" in rep["scorecard"][0]["reason"]
    assert rep["cost_of_trust"]["usd_per_hour"] == 0.0 and rep["cost_of_trust"]["judged_items"] == 6
    for png in ("agreement.png", "ratings.png"):
        assert (ev / png).stat().st_size > 5000
    nb = nbformat.read(out, as_version=4)
    views = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1  # the review widget rendered in the kernel...
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert views[0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] in state  # ...and its state is saved
    assert any(m["state"].get("description") == "A is better [a]" for m in state.values())
    assert len(load_votes(ev / "human.jsonl")) == 9  # executing the notebook casts no vote


def test_review_inputs_say_what_is_missing_in_one_line(tmp_path):
    from lib.evaluate.review import load_review_inputs

    with pytest.raises(UserError, match="answers.jsonl is missing: run 04_evaluate with this run_dir first"):
        load_review_inputs(tmp_path / "eval")
    make_reviewed_run(tmp_path / "run", n=2)
    ev = tmp_path / "run" / "eval"
    got = load_review_inputs(ev)
    assert got.pairs == [PAIR] and got.judge == "smollm2-135m-instruct@test" and got.qset.name == "own_en"
    with pytest.raises(UserError, match=r"no answers from \['gpt'\]"):
        load_review_inputs(ev, pairs=[["tuned", "gpt"]])
    with pytest.raises(UserError, match="not two different models"):
        load_review_inputs(ev, pairs=[["tuned", "tuned"]])
    with pytest.raises(UserError, match=r"/nonexistent.jsonl does not exist.*pass question_set='<kind>:<path>' exactly"):
        load_review_inputs(ev, question_set="mtbench:/nonexistent.jsonl")
