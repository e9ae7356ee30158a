"""Blind pairwise review by people: a queue of (question, answer, answer) with the model
names hidden, votes appended to `eval/human.jsonl`, and a thin ipywidgets view (07_review).

    items = review_items(qset.questions, answers, pairs, judgments, judge=name)
    session = ReviewSession(items, run_dir / "eval" / "human.jsonl", ReviewConfig(reviewer="ana"))
    shown = session.current()          # question, answer A, answer B -- no model names
    session.vote("A", note="B invents a date")   # or session.press("a"): KEYS maps keys to choices
    ReviewWidget(session).show()       # the same model behind buttons and keyboard shortcuts

Blindness: a `Shown` carries no model names; which model sat in slot A is drawn per item
(a hash of seed, reviewer and item, so a resumed session shows the same item the same way)
and recorded in the vote as `shown`, never displayed.

Never lost, never counted twice: every vote is one JSON line, written with one append and
fsynced before `vote` returns, through the keyed append-only store (`JsonlStore`, torn last
line trimmed on open). Its key is `vote_id`, a digest of (reviewer, question, model pair),
so a replayed vote (a double click, a re-run cell, a copied file appended twice) supersedes
the earlier line instead of adding a second vote; a reviewer who changes their mind
re-votes and the latest line counts. A resumed session skips every item this reviewer has
already voted on.

Several reviewers share the one file (one file, not one per reviewer, so every summary reads
one place and a reviewer's name is data, not a path): each opens its own session with its
own name, so their vote ids never collide. lib/core/files.py's append-only rule makes sharing
safe: each vote is one `write` on an O_APPEND descriptor under an exclusive `flock`, and
the torn-tail repair takes the same lock, so lines never interleave and a reviewer opening
the file can never trim a line another reviewer is in the middle of writing.
"""
from __future__ import annotations

import hashlib
import json
import html
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from lib.core.errors import UserError
from lib.evaluate import stats
from lib.evaluate.agreement import judged_pairs
from lib.evaluate.answers import ANSWER_KEY, answer_table
from lib.evaluate.judge import judgments_store, pair_texts
from lib.evaluate.questions import load_question_set
from lib.evaluate.store import JsonlStore

ORDERS = ("random", "least_confident", "disagreements")
CHOICES = ("A", "B", "tie", "both_bad")
# One key per choice; "s" skips (the item goes to the end of the queue, nothing is written).
KEYS = {"a": "A", "1": "A", "b": "B", "2": "B", "t": "tie", "3": "tie", "x": "both_bad", "0": "both_bad", "s": "skip"}
VOTE_KEY = ("vote_id",)


@dataclass(frozen=True)
class ReviewItem:
    """One comparison: a question and two models' answers (model_a/model_b as the judge names them)."""
    question_id: str
    category: str
    question: str
    model_a: str
    model_b: str
    answer_a: str
    answer_b: str
    judge_outcome: str | None = None  # for model_a: win / loss / tie / unjudged; None if never judged
    judge_margin: float | None = None  # smallest score gap over both orders; 0 when the orders disagree

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.question_id, self.model_a, self.model_b)


@dataclass(frozen=True)
class Shown:
    """What the reviewer sees: no model names."""
    question_id: str
    category: str
    question: str
    answer_A: str
    answer_B: str
    position: int  # 1-based among this reviewer's items
    total: int


@dataclass
class ReviewConfig:
    reviewer: str
    order: str = "random"  # random | least_confident (judge's smallest margins first) | disagreements
    seed: int = 0  # the queue order and each item's A/B draw (same seed -> same session)

    def __post_init__(self):
        name = (self.reviewer or "").strip()
        if not name or any(c in name for c in "\n\r\t"):
            raise UserError(f"reviewer {self.reviewer!r} is empty or has line breaks: set reviewer to your name, e.g. reviewer='ana'")
        self.reviewer = name
        if self.order not in ORDERS:
            raise UserError(f"order {self.order!r} is unknown: use one of {', '.join(ORDERS)}")


def vote_id(reviewer: str, question_id: str, model_a: str, model_b: str) -> str:
    """The idempotence key: one vote per reviewer per item, whatever the number of replays."""
    return hashlib.sha256("\0".join((reviewer, question_id, model_a, model_b)).encode()).hexdigest()[:16]


def outcome_for_a(choice: str, shown: list[str], model_a: str) -> str:
    """The vote as an outcome for model_a. 'Both bad' is a tie, as in the MT-bench paper's
    human judgments ('tie (bothbad)' counts as a tie in its agreement figures)."""
    if choice in ("tie", "both_bad"):
        return "tie"
    winner = shown[0] if choice == "A" else shown[1]
    return "win" if winner == model_a else "loss"


# ----------------------------------------------------------------------------- the file
def votes_store(path: str | Path) -> JsonlStore:
    return JsonlStore(path, VOTE_KEY)


def load_votes(path: str | Path) -> list[dict]:
    """Every counted vote (the latest line per vote_id); [] when nobody has voted yet."""
    path = Path(path)
    if not path.exists():
        return []
    return votes_store(path).records()


def append_vote(store: JsonlStore, rec: dict) -> None:
    store.append(rec)  # on disk (fsynced) when this returns


# ----------------------------------------------------------------------------- the queue
def review_items(questions, answers: dict, pairs: list[tuple[str, str]], judgments: list[dict] | None = None,
                 judge: str | None = None) -> list[ReviewItem]:
    """One item per (question, pair) where both models answered; the judge's verdict attached."""
    items = []
    for a, b in pairs:
        verdicts = {r["question_id"]: r for r in stats.pair_verdicts(judgments or [], a, b, judge)}
        margins = _margins(judgments or [], a, b, judge)
        for q in questions:
            if q.question_id not in answers.get(a, {}) or q.question_id not in answers.get(b, {}):
                continue
            text, ans_a, ans_b = pair_texts(q, answers[a][q.question_id], answers[b][q.question_id])
            v = verdicts.get(q.question_id)
            items.append(ReviewItem(q.question_id, q.category, text, a, b, ans_a, ans_b,
                                    judge_outcome=v["outcome"] if v else None,
                                    judge_margin=margins.get(q.question_id)))
    return items


def _margins(judgments: list[dict], a: str, b: str, judge: str | None) -> dict[str, float]:
    """How sure the judge was: the smaller |score gap| over both orders, 0 if the orders disagree."""
    by_q: dict[str, list[float]] = {}
    for r in judgments:
        if (r.get("kind") == "pairwise" and r.get("status") == "ok" and (r["model_a"], r["model_b"]) == (a, b)
                and (judge is None or r.get("judge") == judge)):
            by_q.setdefault(r["question_id"], []).append(r["score_a"] - r["score_b"])
    out = {}
    for qid, gaps in by_q.items():
        if len(gaps) < 2:
            continue  # one order only: unjudged, no margin
        same_sign = all(g > 0 for g in gaps) or all(g < 0 for g in gaps) or all(g == 0 for g in gaps)
        out[qid] = min(abs(g) for g in gaps) if same_sign else 0.0
    return out


def order_items(items: list[ReviewItem], order: str, *, reviewer: str, seed: int = 0,
                votes: list[dict] | None = None) -> list[ReviewItem]:
    """The queue. random: a seeded shuffle per reviewer. least_confident: never-judged and
    swap-inconsistent verdicts first, then by the judge's score margin. disagreements:
    items where another reviewer's vote already disagrees with the judge, then the judge's
    own swap disagreements (ties by inconsistency), then the least confident."""
    rng = random.Random(f"{seed}|{reviewer}")
    shuffled = list(items)
    rng.shuffle(shuffled)  # ties within a rank stay in this reviewer's random order
    if order == "random":
        return shuffled

    def confidence(it: ReviewItem) -> float:
        if it.judge_outcome in (None, "unjudged") or it.judge_margin is None:
            return -1.0
        return it.judge_margin

    if order == "least_confident":
        return sorted(shuffled, key=confidence)
    human = {}
    for v in votes or []:
        human.setdefault((v["question_id"], v["model_a"], v["model_b"]), []).append(v["outcome"])
    def rank(it: ReviewItem):
        disagrees = any(o != it.judge_outcome for o in human.get(it.key, [])) and it.judge_outcome in ("win", "loss", "tie")
        return (0 if disagrees else 1, 0 if it.judge_margin == 0 else 1, confidence(it))
    return sorted(shuffled, key=rank)


# ----------------------------------------------------------------------------- the model
@dataclass
class ReviewSession:
    items: list[ReviewItem]
    path: Path
    config: ReviewConfig
    clock: object = time.time  # seconds; replaced in tests
    queue: list[ReviewItem] = field(init=False)

    def __post_init__(self):
        self.path = Path(self.path)
        keys = [it.key for it in self.items]
        if len(set(keys)) != len(keys):
            raise UserError("the review items repeat a (question, model pair): pass each pair of models once")
        self._total = len(self.items)
        self._shown_at: float | None = None
        self._shown_key = None
        self.refresh()

    def refresh(self) -> None:
        """Re-read the file (other reviewers' votes) and rebuild the queue of items still to vote on."""
        self.store = votes_store(self.path)
        mine = {(v["question_id"], v["model_a"], v["model_b"]) for v in self.store.records()
                if v["reviewer"] == self.config.reviewer}
        todo = [it for it in self.items if it.key not in mine]
        self.queue = order_items(todo, self.config.order, reviewer=self.config.reviewer, seed=self.config.seed,
                                 votes=self.store.records())
        self._shown_at = None

    @property
    def done(self) -> int:
        return self._total - len(self.queue)

    @property
    def finished(self) -> bool:
        return not self.queue

    def shown_order(self, it: ReviewItem) -> list[str]:
        """Which model sits in slot A and B for this reviewer: a fair coin, the same on resume."""
        h = hashlib.sha256(f"{self.config.seed}|{self.config.reviewer}|{'|'.join(it.key)}".encode()).digest()
        return [it.model_a, it.model_b] if h[0] % 2 == 0 else [it.model_b, it.model_a]

    def current(self) -> Shown | None:
        if not self.queue:
            return None
        it = self.queue[0]
        if self._shown_key != it.key or self._shown_at is None:
            self._shown_key, self._shown_at = it.key, float(self.clock())
        first, _ = self.shown_order(it)
        ans_A, ans_B = (it.answer_a, it.answer_b) if first == it.model_a else (it.answer_b, it.answer_a)
        return Shown(it.question_id, it.category, it.question, ans_A, ans_B, self.done + 1, self._total)

    def vote(self, choice: str, note: str = "") -> dict:
        """Record the vote on the current item (appended and fsynced before returning), move on."""
        if choice not in CHOICES:
            raise UserError(f"vote {choice!r} is unknown: use one of {', '.join(CHOICES)}")
        if not self.queue:
            raise UserError("nothing left to review: every item has your vote (use another reviewer name to vote again)")
        self.current()  # starts the clock if the item was never displayed
        it = self.queue[0]
        shown = self.shown_order(it)
        now = float(self.clock())
        rec = {"vote_id": vote_id(self.config.reviewer, *it.key), "reviewer": self.config.reviewer,
               "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "question_id": it.question_id,
               "category": it.category, "model_a": it.model_a, "model_b": it.model_b, "shown": shown,
               "choice": choice, "outcome": outcome_for_a(choice, shown, it.model_a), "note": note.strip(),
               "seconds": round(max(0.0, now - self._shown_at), 3), "order": self.config.order}
        append_vote(self.store, rec)
        self.queue.pop(0)
        self._shown_at = None
        return rec

    def skip(self) -> None:
        """Put the current item at the end of the queue (nothing is written)."""
        if len(self.queue) > 1:
            self.queue.append(self.queue.pop(0))
        self._shown_at = None

    def press(self, key: str, note: str = "") -> dict | None:
        """A keyboard shortcut (see KEYS); unknown keys are ignored, like a keyboard should."""
        action = KEYS.get((key or "").strip().lower()[-1:])
        if action == "skip":
            self.skip()
            return None
        return self.vote(action, note) if action else None


# ----------------------------------------------------------------------------- the view
class ReviewWidget:
    """Buttons, a note box and a shortcut box (focus it, press a / b / t / x, s to skip)
    around a ReviewSession; every click goes through the session, so the tests of the
    session are the tests of the widget's behaviour."""

    def __init__(self, session: ReviewSession):
        import ipywidgets as w

        self.session = session
        self.header = w.HTML()
        self.question = w.HTML()
        self.answer_A = w.HTML(layout=w.Layout(width="50%", border="1px solid #999", padding="6px"))
        self.answer_B = w.HTML(layout=w.Layout(width="50%", border="1px solid #999", padding="6px"))
        self.note = w.Textarea(placeholder="note (optional): why, or what is wrong", layout=w.Layout(width="100%"))
        self.keys = w.Text(placeholder="shortcuts: click here, then a = A better, b = B better, t = tie, x = both bad, s = skip",
                           continuous_update=True, layout=w.Layout(width="100%"))
        self.status = w.HTML()
        buttons = []
        for label, choice, style in (("A is better [a]", "A", "success"), ("B is better [b]", "B", "success"),
                                     ("Tie [t]", "tie", ""), ("Both bad [x]", "both_bad", "danger"),
                                     ("Skip [s]", "skip", "warning")):
            b = w.Button(description=label, button_style=style)
            b.on_click(lambda _b, c=choice: self._act(c))
            buttons.append(b)
        self.keys.observe(self._on_key, names="value")
        self.box = w.VBox([self.header, self.question, w.HBox([self.answer_A, self.answer_B]), w.HBox(buttons),
                           self.note, self.keys, self.status])
        self.render()

    def _on_key(self, change) -> None:
        key = change["new"]
        if not key:
            return
        self.keys.value = ""
        action = KEYS.get(key.strip().lower()[-1:])
        if action:
            self._act(action)

    def _act(self, choice: str) -> None:
        try:
            if choice == "skip":
                self.session.skip()
            else:
                rec = self.session.vote(choice, self.note.value)
                self.status.value = f"saved vote {rec['vote_id']} ({rec['choice']})"
            self.note.value = ""
        except UserError as e:
            self.status.value = f"<b>{html.escape(str(e))}</b>"
        self.render()

    def render(self) -> None:
        s = self.session.current()
        who = html.escape(self.session.config.reviewer)
        if s is None:
            self.header.value = f"<h3>Done: {self.session.done} of {self.session.done} voted by {who}</h3>"
            self.question.value = self.answer_A.value = self.answer_B.value = ""
            return
        block = '<div style="white-space: pre-wrap">{}</div>'
        self.header.value = (f"<h3>Item {s.position} of {s.total} · {html.escape(s.category)} · reviewer {who}</h3>"
                             f"<small>model names are hidden; the left/right order is random</small>")
        self.question.value = "<b>Question</b>" + block.format(html.escape(s.question))
        self.answer_A.value = "<b>Answer A</b>" + block.format(html.escape(s.answer_A))
        self.answer_B.value = "<b>Answer B</b>" + block.format(html.escape(s.answer_B))

    def show(self):
        return self.box


# ----------------------------------------------------------------------------- 07_review's inputs
@dataclass
class ReviewInputs:
    """What 04_evaluate left in eval/: the questions, every model's answers, the judgments."""
    qset: object
    answers: dict
    judgments: list[dict]
    judge: str | None
    pairs: list[tuple[str, str]]
    results: dict


def load_review_inputs(eval_dir: str | Path, question_set: str = "", pairs: list | None = None) -> ReviewInputs:
    """Read eval/answers.jsonl, judgments.jsonl and results.json; one line for anything missing."""
    eval_dir = Path(eval_dir)
    answers_path = eval_dir / "answers.jsonl"
    if not answers_path.is_file():
        raise UserError(f"{answers_path} is missing: run 04_evaluate with this run_dir first (its answers are what you review)")
    results_path = eval_dir / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
    spec = question_set or results.get("question_set") or ""
    if not spec:
        raise UserError("question_set is empty and eval/results.json names none: pass the question_set 04_evaluate used")
    try:
        qset = load_question_set(spec)
    except UserError as e:
        raise UserError(f"{e} (for a public set pass question_set='<kind>:<path>' exactly as 04_evaluate had it)") from None
    answers = answer_table(JsonlStore(answers_path, ANSWER_KEY))
    jpath = eval_dir / "judgments.jsonl"
    judgments = judgments_store(jpath).records() if jpath.is_file() else []
    judge = (results.get("judge") or {}).get("name")
    chosen = [tuple(p) for p in (pairs or [])] or judged_pairs(judgments, judge) or \
        [(p["model_a"], p["model_b"]) for p in (results.get("pairwise") or {}).get("pairs", [])]
    if not chosen:
        raise UserError("nothing to review: the judge compared no pair; pass pairs=[['tuned', 'base']] (two models in answers.jsonl)")
    for pair in chosen:
        if len(pair) != 2 or pair[0] == pair[1]:
            raise UserError(f"pair {list(pair)!r} is not two different models: write pairs=[['tuned', 'base']]")
        missing = [m for m in pair if m not in answers]
        if missing:
            raise UserError(f"pair {list(pair)!r}: no answers from {missing} in {answers_path} "
                            f"(it has {sorted(answers)}): fix pairs or run 04_evaluate with those models")
    return ReviewInputs(qset, answers, judgments, judge, chosen, results)
