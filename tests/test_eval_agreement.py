"""Judge-human and human-human agreement (lib/evaluate/agreement.py) on a fixed vote set, checked
against values computed by hand below; the cost of trust and its budgets.yaml key.

Run: .venv/bin/python -m pytest -q tests/test_eval_agreement.py
"""
from __future__ import annotations

import math

import pytest

from lib.budget.config import load_budgets
from lib.core.errors import UserError
from lib.evaluate.agreement import cohen_kappa, cost_of_trust, human_vs_human, judge_vs_human, votes_needed

JUDGE = "gpt-4-0613"
# The judge's two orders per question as (score_a, score_b) for (tuned, base), and the
# swap-rule verdict they give (a verdict that flips with the order is a tie):
JUDGE_SCORES = {
    "q1": [(8, 3), (7, 4)],  # win
    "q2": [(9, 5), (8, 6)],  # win
    "q3": [(2, 7), (3, 6)],  # loss
    "q4": [(8, 3), (3, 8)],  # flips -> tie
    "q5": [(6, 4), (7, 5)],  # win
    "q6": [(1, 9), (2, 8)],  # loss
    "q7": [(4, 6), (3, 5)],  # loss
    "q8": [(5, 5), (6, 6)],  # tie in both orders
    "q9": [(9, 1), (8, 2)],  # win
    "q10": [(7, 2)],         # one order only: unjudged, left out of every agreement figure
}
CATEGORY = {q: ("writing" if int(q[1:]) <= 5 else "math") for q in JUDGE_SCORES}
# ana's blind votes, as outcomes for tuned:
ANA = {"q1": "win", "q2": "loss", "q3": "loss", "q4": "tie", "q5": "win",
       "q6": "loss", "q7": "tie", "q8": "tie", "q9": "win", "q10": "win"}
# bo voted on q1-q4; q2 is stored the other way round (base, tuned): "loss" for base = a win for tuned.
BO = [("q1", "tuned", "base", "win"), ("q2", "base", "tuned", "loss"), ("q3", "tuned", "base", "tie"),
      ("q4", "tuned", "base", "tie")]


def _judgments():
    out = []
    for q, orders in JUDGE_SCORES.items():
        for order, (sa, sb) in zip(("ab", "ba"), orders):
            out.append({"kind": "pairwise", "question_id": q, "model_a": "tuned", "model_b": "base", "order": order,
                        "turn": None, "judge": JUDGE, "status": "ok", "score_a": sa, "score_b": sb,
                        "category": CATEGORY[q]})
    return out


def _vote(reviewer, q, a, b, outcome, seconds=60.0):
    return {"vote_id": f"{reviewer}-{q}", "reviewer": reviewer, "question_id": q, "category": CATEGORY[q],
            "model_a": a, "model_b": b, "outcome": outcome, "note": f"{reviewer} on {q}", "seconds": seconds}


ANA_VOTES = [_vote("ana", q, "tuned", "base", o) for q, o in ANA.items()]
BO_VOTES = [_vote("bo", *v) for v in BO]


def test_judge_vs_human_by_hand():
    rep = judge_vs_human(ANA_VOTES, _judgments(), JUDGE, n_boot=500)
    ov = rep["overall"]
    # Compared (q10 unjudged): q1 w/w, q2 l/w x, q3 l/l, q4 t/t, q5 w/w, q6 l/l, q7 t/l x, q8 t/t, q9 w/w
    # raw agreement 7/9.
    assert (rep["votes"], rep["compared"], ov["n"]) == (10, 9, 9)
    assert ov["agreement"] == pytest.approx(7 / 9)
    # Non-tie (neither side says tie): q1, q2 x, q3, q5, q6, q9 -> 5/6.
    assert ov["non_tie_n"] == 6 and ov["non_tie_agreement"] == pytest.approx(5 / 6)
    # kappa: human labels w 3 (q1 q5 q9), l 3 (q2 q3 q6), t 3 (q4 q7 q8);
    # judge labels w 4 (q1 q2 q5 q9), l 3 (q3 q6 q7), t 2 (q4 q8).
    # p_o = 63/81, p_e = (3*4 + 3*3 + 3*2)/81 = 27/81, kappa = (63 - 27)/(81 - 27) = 36/54 = 2/3.
    assert ov["kappa"] == pytest.approx(2 / 3)
    for key, ci in (("agreement", "agreement_ci"), ("non_tie_agreement", "non_tie_ci"), ("kappa", "kappa_ci")):
        lo, hi = ov[ci]
        assert lo <= ov[key] <= hi and hi - lo > 0.05, key
    # writing (q1-q5): raw 4/5; non-tie q1 q2x q3 q5 -> 3/4;
    # kappa: human w2 l2 t1, judge w3 l1 t1: p_e = (6 + 2 + 1)/25 = 9/25, p_o = 20/25 -> 11/16.
    w = rep["by_category"]["writing"]
    assert (w["agreement"], w["non_tie_agreement"], w["kappa"]) == pytest.approx((0.8, 0.75, 11 / 16))
    # math (q6-q9; q10 unjudged): q6 ok, q7 x, q8 ok, q9 ok -> 3/4; non-tie q6 q9 -> 2/2.
    m = rep["by_category"]["math"]
    assert (m["n"], m["agreement"], m["non_tie_agreement"]) == (4, pytest.approx(0.75), pytest.approx(1.0))
    # Win rates for tuned on the 9 compared questions: human (3 + 3/2)/9 = 1/2, judge (4 + 2/2)/9 = 5/9.
    (pair,) = rep["pairs"]
    assert pair["human"]["win_rate"] == pytest.approx(0.5) and pair["judge"]["win_rate"] == pytest.approx(5 / 9)
    assert [d["question_id"] for d in rep["disagreements"]] == ["q2", "q7"]
    assert rep["disagreements"][0]["judge_orders"] == ["a", "a"] and rep["disagreements"][1]["note"] == "ana on q7"


def test_human_vs_human_by_hand():
    hh = human_vs_human(ANA_VOTES + BO_VOTES, n_boot=300)
    # Overlap q1-q4: (ana, bo) = (w, w) (l, w) (l, t) (t, t) -> raw 2/4; non-tie q1 q2 -> 1/2;
    # kappa: ana w1 l2 t1, bo w2 l0 t2: p_e = (2 + 0 + 2)/16 = 1/4, p_o = 1/2 -> (1/2 - 1/4)/(3/4) = 1/3.
    ov = hh["overall"]
    assert hh["overlapping_items"] == 4 and ov["n"] == 4
    assert (ov["agreement"], ov["non_tie_agreement"], ov["kappa"]) == pytest.approx((0.5, 0.5, 1 / 3))
    assert list(hh["reviewer_pairs"]) == ["ana / bo"]
    assert human_vs_human(ANA_VOTES)["overall"]["n"] == 0  # one reviewer: nothing to compare


def test_kappa_edges():
    assert cohen_kappa(["win"] * 4, ["win"] * 4) != cohen_kappa(["win"] * 4, ["win"] * 4)  # nan: chance is 1
    # Perfect disagreement on two balanced labels: p_o 0, p_e 1/2 -> -1.
    assert cohen_kappa(["win", "loss"], ["loss", "win"]) == pytest.approx(-1.0)


def test_cost_of_trust_and_votes_for_five_points(tmp_path):
    # n = z^2 p (1 - p) / h^2 with z = 1.95996: p = 0.85 -> 3.84146 * 0.1275 / 0.0025 = 195.9 -> 196;
    # p unknown -> 0.5: 3.84146 * 0.25 / 0.0025 = 384.1 -> 385.
    assert votes_needed(0.85) == 196 and votes_needed(math.nan) == 385 and votes_needed(0.5, 0.10) == 97
    rep = judge_vs_human(ANA_VOTES, _judgments(), JUDGE, n_boot=100)
    votes = [{**v, "seconds": s} for v, s in zip(ANA_VOTES, [30, 60, 90, 45, 75, 60, 60, 50, 70, 60])]
    c = cost_of_trust(rep, votes, judge_usd=0.18, judged_items=9, usd_per_hour=30.0)
    # median 60 s at $30/h = $0.50 a vote; the judge: $0.18 / 9 = $0.02 an item.
    assert c["human_usd_per_item"] == pytest.approx(0.5) and c["judge_usd_per_item"] == pytest.approx(0.02)
    # raw agreement 7/9: 3.84146 * (7/9)(2/9) / 0.0025 = 265.6 -> 266 votes, 257 more than the 9 compared.
    assert (c["votes_for_agreement"], c["more_votes_for_agreement"]) == (266, 257)
    # non-tie 5/6: 3.84146 * (5/36) / 0.0025 = 213.4 -> 214 non-tie votes; 6 of 9 votes are non-tie -> 321 votes.
    assert (c["non_tie_votes_for_non_tie_agreement"], c["votes_for_non_tie_agreement"]) == (214, 321)


def test_review_rate_in_budgets_yaml(tmp_path):
    from lib.core.paths import BUDGETS_YAML

    assert load_budgets(BUDGETS_YAML).human_review_usd_per_hour == 0.0  # the default: unpaid
    text = BUDGETS_YAML.read_text()
    p = tmp_path / "b.yaml"
    p.write_text(text.replace("human_review_usd_per_hour: 0", "human_review_usd_per_hour: 42.5"))
    assert load_budgets(p).human_review_usd_per_hour == 42.5
    for bad, msg in (("-3", "is negative"), ("'fast'", "must be a number")):
        p.write_text(text.replace("human_review_usd_per_hour: 0", f"human_review_usd_per_hour: {bad}"))
        with pytest.raises(UserError, match=f"human_review_usd_per_hour.*{msg}") as e:
            load_budgets(p)
        assert "\n" not in str(e.value)
    p.write_text(text.replace("human_review_usd_per_hour: 0", "human_review_usd_per_hr: 5"))
    with pytest.raises(UserError, match="did you mean 'human_review_usd_per_hour'"):
        load_budgets(p)


def unreadable_text(fig, max_width_in: float = 8.5) -> list[str]:
    """What keeps a person from reading a figure at the notebook's width: a figure wider than
    max_width_in inches (scaled down there, its text shrinks), text smaller than 7 points,
    text cut at the figure's edge, or two texts drawn over each other."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = [f"figure is {fig.get_figwidth():.1f} in wide"] if fig.get_figwidth() > max_width_in else []
    box = fig.bbox
    texts = list(fig.texts)  # the suptitle among them
    for ax in fig.axes:
        texts += [*ax.texts, ax.title, ax.xaxis.label, ax.yaxis.label]
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = sorted(limits)  # a tick beyond the limits keeps a label that is never drawn
            texts += [t for tick in axis.get_major_ticks() if lo - 1e-9 <= tick.get_loc() <= hi + 1e-9
                      for t in (tick.label1, tick.label2)]
        if ax.get_legend():
            texts += ax.get_legend().get_texts()
    texts = [t for t in texts if t.get_visible() and t.get_text().strip()]
    extents = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    for t, (label, e) in zip(texts, extents):
        if t.get_fontsize() < 7:
            problems.append(f"{label!r} is {t.get_fontsize():.0f} pt")
        if e.x0 < box.x0 - 1 or e.x1 > box.x1 + 1 or e.y0 < box.y0 - 1 or e.y1 > box.y1 + 1:
            problems.append(f"{label!r} is cut at the edge")
    for i, (l1, e1) in enumerate(extents):
        for l2, e2 in extents[i + 1:]:
            if e1.x0 < e2.x1 - 1 and e2.x0 < e1.x1 - 1 and e1.y0 < e2.y1 - 1 and e2.y0 < e1.y1 - 1:
                problems.append(f"{l1!r} overlaps {l2!r}")
    return problems


def test_agreement_chart_with_and_without_votes(tmp_path):
    from lib.core.figures import save
    from lib.evaluate.agreement import agreement_chart

    rep = judge_vs_human(ANA_VOTES, _judgments(), JUDGE, n_boot=100)
    fig = agreement_chart(rep, human_vs_human(ANA_VOTES + BO_VOTES, n_boot=100))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["overall (n=9)", "math (n=4)", "writing (n=5)", "people vs people (n=4)"]  # top down
    assert unreadable_text(fig) == []
    assert save(fig, tmp_path / "a.png").stat().st_size > 5000
    empty = agreement_chart(judge_vs_human([], _judgments(), JUDGE, n_boot=10))
    assert any("no vote compared" in t.get_text() for t in empty.texts)
    assert unreadable_text(empty) == []


def test_the_readability_check_can_fail():
    """unreadable_text sees the former chart's faults: a figure wider than the notebook and
    value labels printed over each other."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12.4, 3.6))
    ax.text(0.5, 0.5, "0.00", fontsize=7)
    ax.text(0.505, 0.5, "0.00", fontsize=7)
    problems = unreadable_text(fig)
    plt.close(fig)
    assert "figure is 12.4 in wide" in problems and "'0.00' overlaps '0.00'" in problems
