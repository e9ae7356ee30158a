"""Question sets: the project's own (offline default) and loaders for the public ones.

A `Question` is one to two user turns, a category, a language and optionally reference
answers (one per turn). Some sets come with another system's answers already made --
Self-Instruct's 252 user-oriented instructions with text-davinci-003's predictions (the
opponent of Alpaca's blind comparison), AlpacaEval's 805 with its baseline's outputs --
and those answers act as a "model" that needs no generation (`QuestionSet.premade`).

    qs = load_question_set("own_en")                          # lib/data/questions_en.jsonl
    qs = load_question_set("mtbench:../shared/data/mtbench_questions.jsonl|../shared/data/mtbench_reference_gpt4.jsonl")
    qs = load_question_set("selfinstruct:<instructions.jsonl>|<text-davinci-003 predictions.jsonl>", max_questions=20)
    qs = load_question_set("alpacaeval:https://.../alpaca_eval.json")
    qs = load_question_set("alpaca:runs/dev/data/clean.jsonl", max_questions=6700)  # 08_prefer's prompts

Spec grammar: `own_en`, `own_zh`, `own` (both), or `<kind>:<path or URL>[|<second file>]`
with kind in vicuna, mtbench (second file: reference answers), selfinstruct (second file:
text-davinci-003 predictions), alpacaeval (one JSON/JSONL file; the `output` column
becomes the premade answers of its `generator`), alpaca (Alpaca-format records such as a run's
data/clean.jsonl: instruction + input is the question, output the reference).
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field, replace

from lib.core.errors import UserError
from lib.core.files import parse_jsonl
from lib.core.paths import LIB, repo_path
from lib.core.text import guess_lang

DATA = LIB / "data"
OWN_SETS = {"own_en": ["questions_en.jsonl"], "own_zh": ["questions_zh.jsonl"],
            "own": ["questions_en.jsonl", "questions_zh.jsonl"]}
KINDS = ("vicuna", "mtbench", "selfinstruct", "alpacaeval", "alpaca")


@dataclass
class Question:
    question_id: str
    turns: list[str]
    category: str = "general"
    lang: str = "en"
    reference: list[str] | None = None  # one reference answer per turn, when known

    def to_dict(self) -> dict:
        return {"question_id": self.question_id, "category": self.category, "lang": self.lang,
                "turns": self.turns, "reference": self.reference}


@dataclass
class QuestionSet:
    name: str
    questions: list[Question]
    # premade[model_name][question_id] = [answer per turn]
    premade: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def by_id(self) -> dict[str, Question]:
        return {q.question_id: q for q in self.questions}

    def sample(self, max_questions: int = 0) -> "QuestionSet":
        """This set with at most `max_questions` (0 = all), spread over categories; premade answers kept."""
        if not max_questions or max_questions >= len(self.questions):
            return self
        return replace(self, questions=spread_over_categories(self.questions, max_questions))


def read_source(path_or_url: str) -> str:
    """The text of a local file or an http(s) URL; one clear line when neither works."""
    if re.match(r"^https?://", path_or_url):
        try:
            with urllib.request.urlopen(path_or_url, timeout=60) as r:
                return r.read().decode("utf-8")
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise UserError(f"cannot download {path_or_url} ({e}): check the URL or download it and pass the path") from None
    p = repo_path(path_or_url)  # relative to the repository, as every notebook path parameter
    if not p.is_file():
        raise UserError(f"question file {p} does not exist: pass an existing path or an http(s) URL")
    return p.read_text(encoding="utf-8")


def read_records(path_or_url: str) -> list[dict]:
    """JSON array or JSON Lines."""
    text = read_source(path_or_url).strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path_or_url} is not valid JSON ({e}): fix or re-download it") from None
    return parse_jsonl(text, path_or_url, "fix or re-download the file")


def _require(rec: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in rec]
    if missing:
        raise UserError(f"{where}: record lacks {missing}; is this the right file for this loader?")


# ----------------------------------------------------------------------------- loaders
def load_own(name: str = "own_en") -> QuestionSet:
    qs = []
    for fname in OWN_SETS[name]:
        for rec in read_records(str(DATA / fname)):
            qs.append(Question(question_id=str(rec["question_id"]), turns=rec["turns"], category=rec["category"],
                               lang=rec["lang"], reference=rec.get("reference")))
    return QuestionSet(name, qs)


def _references(path_or_url: str | None) -> dict[str, list[str]]:
    """FastChat reference-answer files: {question_id, choices: [{turns}]}."""
    if not path_or_url:
        return {}
    out = {}
    for rec in read_records(path_or_url):
        _require(rec, ("question_id", "choices"), path_or_url)
        out[str(rec["question_id"])] = rec["choices"][0]["turns"]
    return out


def load_fastchat(kind: str, questions: str, reference: str | None = None) -> QuestionSet:
    """Vicuna-80 and MT-bench share FastChat's schema: {question_id, category, turns}."""
    refs = _references(reference)
    qs = []
    for rec in read_records(questions):
        _require(rec, ("question_id", "turns"), questions)
        qid = str(rec["question_id"])
        qs.append(Question(question_id=qid, turns=list(rec["turns"]), category=rec.get("category", "general"),
                           lang=guess_lang(" ".join(rec["turns"])), reference=refs.get(qid) or rec.get("reference")))
    return QuestionSet(kind, qs)


def instruction_text(instruction: str, input: str = "") -> str:
    """An instruction with its optional input, as one user turn."""
    instruction = instruction.strip()
    return f"{instruction}\n\n{input.strip()}" if input and input.strip() else instruction


def load_selfinstruct(instructions: str, predictions: str | None = None,
                      opponent: str = "text-davinci-003") -> QuestionSet:
    """Self-Instruct's 252 user-oriented instructions; the human-written output is the reference.

    `predictions` (yizhongw/self-instruct human_eval/predictions/*.jsonl) holds another
    system's answers, matched by instruction and input text (not by line order, which
    a re-exported file need not keep)."""
    qs = []
    for rec in read_records(instructions):
        _require(rec, ("id", "instruction", "instances"), instructions)
        inst = rec["instances"][0] if rec["instances"] else {}
        text = instruction_text(rec["instruction"], inst.get("input", ""))
        qs.append(Question(question_id=str(rec["id"]), turns=[text], category=rec.get("motivation_app", "general"),
                           lang=guess_lang(text), reference=[inst["output"]] if inst.get("output") else None))
    premade = {}
    if predictions:
        by_text = {}
        for rec in read_records(predictions):
            _require(rec, ("instruction", "response"), predictions)
            by_text[instruction_text(rec["instruction"], rec.get("input", ""))] = rec["response"].strip()
        answers = {q.question_id: [by_text[q.turns[0]]] for q in qs if q.turns[0] in by_text}
        if not answers:
            raise UserError(f"{predictions} answers none of the instructions in {instructions}: pass the matching predictions file")
        premade[opponent] = answers
    return QuestionSet("selfinstruct", qs, premade)


def load_alpacaeval(path_or_url: str) -> QuestionSet:
    """AlpacaEval's 805 ({instruction, output, generator, dataset}); outputs become premade answers."""
    qs, premade = [], defaultdict(dict)
    for i, rec in enumerate(read_records(path_or_url)):
        _require(rec, ("instruction",), path_or_url)
        qid = f"alpacaeval-{i}"
        qs.append(Question(question_id=qid, turns=[rec["instruction"]], category=rec.get("dataset", "general"),
                           lang=guess_lang(rec["instruction"])))
        if rec.get("output"):
            premade[rec.get("generator") or "alpacaeval-baseline"][qid] = [rec["output"]]
    return QuestionSet("alpacaeval", qs, dict(premade))


def load_alpaca(path: str) -> QuestionSet:
    """Alpaca-format records ({instruction, input, output}): the prompts 08_prefer samples pairs for."""
    qs = []
    for i, rec in enumerate(read_records(path)):
        _require(rec, ("instruction",), path)
        text = instruction_text(rec["instruction"], rec.get("input", ""))
        qs.append(Question(question_id=str(rec.get("id") or f"alpaca-{i}"), turns=[text],
                           category=rec.get("source") or "general", lang=rec.get("lang") or guess_lang(text),
                           reference=[rec["output"]] if rec.get("output") else None))
    return QuestionSet("alpaca", qs)


def load_question_set(spec: str, max_questions: int = 0) -> QuestionSet:
    """Parse a spec (see module docstring) and keep at most `max_questions` (0 = all)."""
    if spec in OWN_SETS:
        qs = load_own(spec)
    else:
        kind, sep, rest = spec.partition(":")
        if not sep or kind not in KINDS or not rest:
            raise UserError(f"question_set {spec!r} is not known: use {', '.join(OWN_SETS)} or "
                            f"<{'|'.join(KINDS)}>:<path or URL>[|<second file>]")
        first, _, second = rest.partition("|")
        if kind in ("vicuna", "mtbench"):
            qs = load_fastchat(kind, first, second or None)
        elif kind == "selfinstruct":
            qs = load_selfinstruct(first, second or None)
        elif kind == "alpaca":
            qs = load_alpaca(first)
        else:
            qs = load_alpacaeval(first)
    if not qs.questions:
        raise UserError(f"question set {spec!r} is empty: check the file")
    return qs.sample(max_questions)


def spread_over_categories(questions: list[Question], n: int) -> list[Question]:
    """The first n questions taken round-robin over categories, in file order.

    A small sample of MT-bench should touch writing, math and coding, not ten writing prompts."""
    n = min(n, len(questions))
    by_cat: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        by_cat[q.category].append(q)
    picked: set[str] = set()
    rank = 0
    while len(picked) < n:
        for cat_qs in by_cat.values():
            if rank < len(cat_qs) and len(picked) < n:
                picked.add(cat_qs[rank].question_id)
        rank += 1
    return [q for q in questions if q.question_id in picked]
