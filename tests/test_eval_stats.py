"""The swap rule, win rates, bootstrap intervals and the length-controlled win rate; the
intervals' coverage over simulated review studies (questions resampled, not votes).

Run: .venv/bin/python -m pytest -q tests/test_eval_stats.py   (~15 s of one core for the simulations)
"""
import math

import numpy as np
import pytest

from lib.evaluate.agreement import agreement_columns, agreement_of_totals, agreement_stats
from lib.evaluate.ratings import bradley_terry, ratings, to_elo
from lib.evaluate.stats import (bootstrap_ci, combine_orders, length_controlled_win_rate, mean_of_totals,
                                order_agreement, order_verdict, pair_verdicts, win_rate)


@pytest.mark.parametrize("ab,ba,outcome,consistent", [
    ("a", "a", "win", True), ("b", "b", "loss", True), ("tie", "tie", "tie", True),
    ("a", "b", "tie", False), ("b", "a", "tie", False), ("a", "tie", "tie", False), ("tie", "b", "tie", False),
    ("a", None, "unjudged", None), (None, "b", "unjudged", None), (None, None, "unjudged", None),
])
def test_swap_rule(ab, ba, outcome, consistent):
    assert combine_orders(ab, ba) == (outcome, consistent)


def _rec(q, order, s1, s2, status="ok"):
    """A pairwise record as judge.py writes it: s1/s2 are Assistant 1/2 as shown."""
    rec = {"kind": "pairwise", "question_id": q, "category": "c", "model_a": "x", "model_b": "y", "order": order,
           "judge": "j", "status": status}
    if status == "ok":
        rec["scores"] = [s1, s2]
        rec["score_a"], rec["score_b"] = (s1, s2) if order == "ab" else (s2, s1)
    return rec


def test_pair_verdicts_maps_scores_back_to_models():
    recs = [
        _rec("q1", "ab", 8, 5), _rec("q1", "ba", 5, 8),  # x better in both orders -> win
        _rec("q2", "ab", 8, 5), _rec("q2", "ba", 8, 5),  # first slot always wins -> flipped -> tie
        _rec("q3", "ab", 3, 9), _rec("q3", "ba", 9, 3),  # y better in both -> loss
        _rec("q4", "ab", 8, 5), _rec("q4", "ba", 0, 0, status="unparsed"),  # one order missing -> unjudged
    ]
    rows = {r["question_id"]: r for r in pair_verdicts(recs, "x", "y", "j")}
    assert [rows[q]["outcome"] for q in ("q1", "q2", "q3", "q4")] == ["win", "tie", "loss", "unjudged"]
    assert rows["q2"]["consistent"] is False
    ag = order_agreement(list(rows.values()))
    assert ag["questions_with_both_orders"] == 3 and ag["consistent"] == 2
    # First slot won: q1 ab (x first), q2 ab and ba, q3 ba (y first); second slot: q1 ba, q3 ab.
    assert ag["first_position_wins"] == 4 and ag["second_position_wins"] == 2
    assert order_verdict(None) is None


def test_win_rate_counts_ties_half_and_reports_unjudged():
    wr = win_rate(["win", "win", "tie", "loss", "unjudged"])
    assert (wr["win"], wr["tie"], wr["loss"], wr["unjudged"], wr["judged"]) == (2, 1, 1, 1, 4)
    assert wr["win_rate"] == pytest.approx(2.5 / 4)
    assert wr["ci"][0] <= wr["win_rate"] <= wr["ci"][1]
    empty = win_rate(["unjudged"])
    assert empty["judged"] == 0 and math.isnan(empty["win_rate"])


def test_bootstrap_is_deterministic_and_monotone():
    rng = np.random.default_rng(1)
    x = rng.binomial(1, 0.6, size=60).astype(float)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)
    widths = []
    for conf in (0.5, 0.8, 0.9, 0.95, 0.99):
        lo, hi = bootstrap_ci(x, confidence=conf, seed=0)
        assert lo <= x.mean() <= hi
        widths.append(hi - lo)
    assert widths == sorted(widths) and widths[0] < widths[-1]
    # More questions -> a narrower interval.
    big = rng.binomial(1, 0.6, size=2000).astype(float)
    lo_b, hi_b = bootstrap_ci(big, seed=0)
    lo_s, hi_s = bootstrap_ci(x, seed=0)
    assert hi_b - lo_b < hi_s - lo_s
    # No spread, no width.
    assert bootstrap_ci(np.ones(10)) == (1.0, 1.0)


def test_bootstrap_coverage_near_nominal():
    """A 90% interval should cover the true win rate in roughly 90% of repeated experiments."""
    rng = np.random.default_rng(0)
    p, n, reps = 0.65, 80, 300
    covered = 0
    for i in range(reps):
        x = rng.binomial(1, p, size=n).astype(float)
        lo, hi = bootstrap_ci(x, confidence=0.9, n_boot=1000, seed=i)
        covered += lo <= p <= hi
    assert 0.82 <= covered / reps <= 0.96


def test_length_controlled_win_rate():
    outcomes = ["win"] * 7 + ["loss"] * 3
    same = [50] * 10
    # No length difference: the length term is uninformative and LC equals the plain rate.
    assert length_controlled_win_rate(outcomes, same, same) == pytest.approx(0.7, abs=1e-3)
    # Every win came with a much longer answer: part of the advantage is attributed to length.
    longer_when_winning = [200] * 7 + [50] * 3
    lc = length_controlled_win_rate(outcomes, longer_when_winning, same)
    assert lc < 0.7
    assert math.isnan(length_controlled_win_rate(["unjudged"], [1], [1]))


# ----------------------------------------------------------------------------- coverage by simulation
# A review study as 07_review sees one: Q questions, R reviewers on each, one judge verdict per
# question. Question q carries a latent preference m_q ~ N(MU, TAU^2) for model a over model b that
# everyone reading it shares -- this is what makes the votes on one question correlated. A reviewer
# sees m_q + N(0, SH^2), the judge m_q + N(0, SJ^2); a latent above C is a win, below -C a loss,
# between a tie. The true values follow from the model by quadrature over m_q; the estimators are
# the project's own (win_rate, agreement_stats, ratings), given each vote's question.
MU, TAU, SH, SJ, C = 0.3, 1.0, 0.7, 0.8, 0.4
Q, R = 40, 3
LABELS = np.array(["win", "tie", "loss"])
_phi = np.vectorize(lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2))))


def _label_probs(m, sd):
    """(win, tie, loss) probabilities of one vote on a question with latent preference m."""
    win, loss = _phi((m - C) / sd), _phi((-C - m) / sd)
    return np.stack([win, 1 - win - loss, loss], axis=-1)


def _true_values() -> dict:
    z, w = np.polynomial.hermite_e.hermegauss(120)
    w = w / w.sum()
    ph, pj = _label_probs(MU + TAU * z, SH), _label_probs(MU + TAU * z, SJ)
    mean = lambda f: float(w @ f)

    def agreement(pa, pb):  # two independent raters of the same question
        p_o = mean((pa * pb).sum(axis=1))
        p_e = sum(mean(pa[:, k]) * mean(pb[:, k]) for k in range(3))
        non_tie = mean(pa[:, 0] * pb[:, 0] + pa[:, 2] * pb[:, 2]) / mean((1 - pa[:, 1]) * (1 - pb[:, 1]))
        return np.array([p_o, non_tie, (p_o - p_e) / (1 - p_e)])

    return {"win_rate": mean(ph[:, 0] + ph[:, 1] / 2), "judge_vs_human": agreement(ph, pj),
            "human_vs_human": agreement(ph, ph)}


def _studies(n: int, seed: int):
    """n studies: labels (n, Q, R) of the reviewers, (n, Q) of the judge, as indices into LABELS."""
    rng = np.random.default_rng(seed)
    m = MU + TAU * rng.standard_normal((n, Q))
    label = lambda lat: np.where(lat > C, 0, np.where(lat < -C, 2, 1))
    return label(m[..., None] + SH * rng.standard_normal((n, Q, R))), label(m + SJ * rng.standard_normal((n, Q)))


def _agreement_interval(x, y, groups, n_boot, seed):
    st = agreement_stats(list(x), list(y), groups, n_boot=n_boot, seed=seed)
    return np.array([st[c] for c in ("agreement_ci", "non_tie_ci", "kappa_ci")]).T


def test_intervals_resample_questions_and_cover_the_truth():
    """95% intervals of the win rate, of judge-vs-people and people-vs-people agreement (raw,
    non-tie, Cohen's kappa) cover the true value in 93-97% of 1000 simulated studies of 40
    questions with three reviewers each.

    Monte-Carlo error: a coverage estimated from 1000 studies has a standard error of
    sqrt(0.95 * 0.05 / 1000) = 0.7 points, so 93-97% is the nominal 95% +/- 2.9 standard
    errors: an interval method with true coverage 95% lands outside with probability 0.4%.
    Measured with this seed (2026-12-06): win rate 0.938; judge vs people raw 0.957, non-tie
    0.943, kappa 0.944; people vs people 0.956, 0.959, 0.957. With 2000 studies (another seed)
    every measure was within 0.937-0.955 at 40 questions and 0.937-0.964 at 80. The seed is
    fixed, so the test is deterministic; resampling votes instead fails it (next test)."""
    truth = _true_values()
    human, judge = _studies(1000, seed=20261206)
    hits = {k: [] for k in ("win rate", "raw", "non-tie", "kappa", "raw (people)", "non-tie (people)", "kappa (people)")}
    votes_q = [f"q{i}" for i in range(Q) for _ in range(R)]
    pairs = [(0, 1), (0, 2), (1, 2)]  # the three pairs of reviewers on each question
    pairs_q = [f"q{i}" for i in range(Q) for _ in pairs]
    for s in range(len(human)):
        h = LABELS[human[s]]
        wr = win_rate(list(h.ravel()), votes_q, n_boot=1000, seed=s)
        hits["win rate"].append(wr["ci"][0] <= truth["win_rate"] <= wr["ci"][1])
        lo, hi = _agreement_interval(h.ravel(), np.repeat(LABELS[judge[s]], R), votes_q, 1000, s)
        for k, name in enumerate(("raw", "non-tie", "kappa")):
            hits[name].append(lo[k] <= truth["judge_vs_human"][k] <= hi[k])
        lo, hi = _agreement_interval(h[:, [a for a, _ in pairs]].ravel(), h[:, [b for _, b in pairs]].ravel(),
                                     pairs_q, 1000, s)
        for k, name in enumerate(("raw (people)", "non-tie (people)", "kappa (people)")):
            hits[name].append(lo[k] <= truth["human_vs_human"][k] <= hi[k])
    coverage = {k: float(np.mean(v)) for k, v in hits.items()}
    assert all(0.93 <= c <= 0.97 for c in coverage.values()), coverage


def _vote_level_percentile(columns: np.ndarray, statistic, *, n_boot: int, seed: int) -> np.ndarray:
    """The bootstrap this project had before: votes resampled one by one, plain 95% percentiles."""
    idx = np.random.default_rng(seed).integers(0, len(columns), size=(n_boot, len(columns)))
    return np.nanquantile(statistic(columns[idx].sum(axis=1)), [0.025, 0.975], axis=0)


def test_resampling_votes_instead_of_questions_fails_the_same_check():
    """The same studies through the former interval (each vote its own unit, percentiles): it
    treats three correlated votes as three independent facts, and no measure reaches the 93%
    the question-level intervals pass. Measured on these 300 studies (Monte-Carlo standard error
    about 2 points): win rate 0.79, judge-vs-people raw 0.90, non-tie 0.82, kappa 0.89 -- the
    84-88% of issue 23, give or take the design."""
    truth = _true_values()
    human, judge = _studies(300, seed=20261206)  # the first 300 studies of the test above
    hits = {k: [] for k in ("win rate", "raw", "non-tie", "kappa")}
    for s in range(len(human)):
        h = LABELS[human[s]].ravel()
        values = np.array([{"win": 1.0, "tie": 0.5, "loss": 0.0}[o] for o in h])
        lo, hi = _vote_level_percentile(np.stack([values, np.ones_like(values)], axis=1), mean_of_totals,
                                        n_boot=1000, seed=s)
        hits["win rate"].append(lo <= truth["win_rate"] <= hi)
        lo, hi = _vote_level_percentile(agreement_columns(list(h), list(np.repeat(LABELS[judge[s]], R))),
                                        agreement_of_totals, n_boot=1000, seed=s)
        for k, name in enumerate(("raw", "non-tie", "kappa")):
            hits[name].append(lo[k] <= truth["judge_vs_human"][k] <= hi[k])
    coverage = {k: float(np.mean(v)) for k, v in hits.items()}
    assert all(c < 0.93 for c in coverage.values()), coverage


BETA = {"base": 0.0, "alpaca": 0.5, "vicuna": 1.2}  # each model's mean latent quality
TB = 0.8  # spread of a model's quality from question to question


def _true_ratings() -> dict[str, float]:
    """Bradley-Terry ratings of the population: the fit to every pair's expected points (each
    pair meets equally often; a tie is half a point, as in `ratings`)."""
    names = list(BETA)
    sd = math.sqrt(2 * TB ** 2 + SH ** 2)
    points = np.zeros((3, 3))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                win, tie, _ = _label_probs(np.array(BETA[a] - BETA[b]), sd)
                points[i, j] = win + tie / 2
    elo = to_elo(bradley_terry(points, 1 - np.eye(3), prior=0.0))
    return dict(zip(names, elo))


def test_rating_intervals_cover_the_truth():
    """Bradley-Terry ratings of three models: on each of 40 questions every model has its own
    quality (mean BETA, spread TB), and three reviewers vote on each of the three pairs, so a
    question's nine battles share its qualities. Each model's 95% interval covers its true
    rating in 93-97% of 500 simulated studies (standard error of the estimate 1 point; 93-97%
    is +/- 2.05 of them). Measured with this seed (2026-12-06): base 0.952, alpaca 0.944,
    vicuna 0.936."""
    truth = _true_ratings()
    names = list(BETA)
    pairs = [(0, 1), (0, 2), (1, 2)]
    rng = np.random.default_rng(20261207)
    hits = {m: [] for m in names}
    for s in range(500):
        quality = np.array(list(BETA.values())) + TB * rng.standard_normal((Q, 3))
        gap = np.stack([quality[:, a] - quality[:, b] for a, b in pairs], axis=1)
        latent = gap[..., None] + SH * rng.standard_normal((Q, 3, R))
        votes = LABELS[np.where(latent > C, 0, np.where(latent < -C, 2, 1))]
        battles = [(names[a], names[b], votes[q, k, r], f"q{q}") for q in range(Q) for k, (a, b) in enumerate(pairs)
                   for r in range(R)]
        for row in ratings(battles, prior=0.0, n_boot=500, seed=s):
            hits[row["model"]].append(row["ci"][0] <= truth[row["model"]] <= row["ci"][1])
    coverage = {m: float(np.mean(v)) for m, v in hits.items()}
    assert all(0.93 <= c <= 0.97 for c in coverage.values()), coverage
