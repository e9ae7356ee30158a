"""Natural-text candidates for the novelty filter: real phrases recombined, mostly novel.

Teacher output at BELLE scale is mostly novel, yet phrases recur everywhere: shared openers
("Write a short story about"), shared clauses, light rewordings of an earlier instruction.
`natural_candidates(n, seed)` builds such a stream from real records only, deterministically;
DESCRIPTION (printed by bench/bench_novelty.py --natural) says how.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

DESCRIPTION = (
    "recombined real phrases, deterministic for a seed: "
    "50% splice = the first 1-2 clauses of one real instruction + one clause of a second + the "
    "last 1-2 clauses of a third (clauses = sentences cut again after commas); "
    "40% opener = one of 40 common Alpaca/Self-Instruct openers ('Write a short story about') + "
    "a real 4-12 word span of a record, 60% of them + ' and ' + a second 3-8 word span, 30% + one "
    "of 12 common tails ('in under 100 words'); "
    "5% edit = one or two word edits (drop, replace, swap, insert) of an earlier candidate; "
    "5% Chinese = one of 15 BELLE-style openers + three real 3-8 character spans of the BELLE seed "
    "tasks. Sources (../shared/data): the 10,619 GPTeacher + GSM8K instructions of "
    "bench_instructions.jsonl, the 175 Self-Instruct seeds, the 252 user-oriented instructions, "
    "the 175 BELLE Chinese seeds (instruction, input, output). Pool starts with the 175 "
    "Self-Instruct + 175 BELLE seed instructions."
)

OPENERS = [
    "Write a short story about", "Explain the difference between", "Give three tips for",
    "Describe", "Generate a list of", "Summarize", "What are the benefits of", "How can I",
    "Write a poem about", "Create a recipe for", "Explain why", "Give an example of",
    "Write a letter to", "List five facts about", "Rewrite the sentence about",
    "Compose a tweet about", "Classify the following", "Suggest a name for",
    "Write a product description for", "Brainstorm ideas for", "Explain how to",
    "Write a dialogue between", "Describe the main character of", "Outline a plan for",
    "Translate into French", "Write a haiku about", "Give advice to someone who",
    "Compare and contrast", "Find the main idea of", "Write a persuasive essay on",
    "Make a to-do list for", "Create a quiz about", "What would happen if", "Write a review of",
    "Design a lesson plan about", "Identify the tone of", "Write an email to",
    "Come up with a slogan for", "Generate a headline for", "Explain to a child",
]
TAILS = [
    "in under 100 words", "for a 10-year-old", "using simple language", "in three sentences",
    "with examples", "in a formal tone", "as a bulleted list", "from a historian's view",
    "in the style of a news report", "step by step", "with a happy ending", "for beginners",
]
ZH_OPENERS = [
    "请写一篇关于", "解释一下", "给出一些关于", "用三句话描述", "列出五个关于", "请总结",
    "为下面的主题写一首诗：", "请比较", "如何理解", "写一段对话，主题是", "给我讲一个关于",
    "请翻译并解释", "分析下面的内容：", "为以下产品写广告语：", "简述",
]
EDIT_WORDS = ["new", "short", "simple", "the", "a", "list", "detailed", "please", "quickly", "three"]
_SENTENCE = re.compile(r"(?<=[.?!])\s+")
_CLAUSE = re.compile(r"(?<=,)\s+")


def _jsonl(name: str) -> list[dict]:
    with open(SHARED / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_sources() -> tuple[list[str], list[str]]:
    """(English instructions, Chinese texts) from the shared reference data."""
    en = [r["instruction"] for r in _jsonl("bench_instructions.jsonl")]
    en += [r["instruction"] for r in _jsonl("selfinstruct_seed_tasks.jsonl")]
    en += [r["instruction"] for r in _jsonl("selfinstruct_user_oriented_instructions.jsonl")]
    zh = []
    for r in _jsonl("belle_zh_seed_tasks.jsonl"):
        zh.append(r["instruction"].strip())
        zh += [v.strip() for inst in r["instances"] for v in (inst["input"], inst["output"]) if v.strip()]
    return en, zh


def clauses(text: str) -> list[str]:
    """Sentences, each cut again after its commas."""
    return [c for s in _SENTENCE.split(text.strip()) for c in _CLAUSE.split(s) if c]


def light_edit(words: list[str], rng: random.Random) -> list[str]:
    """One or two word edits: drop, replace, swap or insert."""
    words = list(words)
    for _ in range(rng.choice([1, 1, 2])):
        if len(words) < 3:
            break
        j = rng.randrange(len(words))
        op = rng.random()
        if op < 0.3:
            del words[j]
        elif op < 0.6:
            words[j] = rng.choice(EDIT_WORDS)
        elif op < 0.8:
            k = rng.randrange(len(words))
            words[j], words[k] = words[k], words[j]
        else:
            words.insert(j, rng.choice(EDIT_WORDS))
    return words


class _Builder:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.en, self.zh = load_sources()
        self.split = [c for c in (clauses(t) for t in self.en) if len(c) >= 2]
        self.zh_text = [t.replace("\n", "") for t in self.zh]

    def splice(self) -> str:
        """The opening clause(s) of one record, a clause of a second, the closing clause(s) of a third."""
        rng = self.rng
        a, b, c = rng.choice(self.split), rng.choice(self.split), rng.choice(self.split)
        lead = a[: rng.randint(1, min(2, len(a) - 1))]
        tail = b[len(b) - rng.randint(1, min(2, len(b) - 1)):]
        return " ".join(lead + [rng.choice(c)] + tail)

    def span(self, lo: int, hi: int) -> str:
        words = self.rng.choice(self.en).split()
        k = min(len(words), self.rng.randint(lo, hi))
        i = self.rng.randrange(len(words) - k + 1)
        return " ".join(words[i: i + k]).strip(".,?!:;")

    def opener(self) -> str:
        rng = self.rng
        text = f"{rng.choice(OPENERS)} {self.span(4, 12)}"
        if rng.random() < 0.6:
            text += f" and {self.span(3, 8)}"
        return f"{text} {rng.choice(TAILS)}." if rng.random() < 0.3 else text + "."

    def zh_span(self) -> str:
        text = self.rng.choice(self.zh_text)
        k = min(len(text), self.rng.randint(3, 8))
        i = self.rng.randrange(len(text) - k + 1)
        return text[i: i + k]

    def chinese(self) -> str:
        rng = self.rng
        return f"{rng.choice(ZH_OPENERS)}{self.zh_span()}，{self.zh_span()}，{self.zh_span()}。"


def labelled_candidates(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n (kind, text) candidates in arrival order (deterministic for a seed)."""
    b = _Builder(seed)
    rng = b.rng
    out: list[tuple[str, str]] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.50:
            out.append(("splice", b.splice()))
        elif r < 0.90:
            out.append(("opener", b.opener()))
        elif r < 0.95 and out:
            out.append(("edit", " ".join(light_edit(rng.choice(out)[1].split(), rng))))
        else:
            out.append(("zh", b.chinese()))
    return out


def natural_candidates(n: int, seed: int = 0) -> list[str]:
    """n candidates in arrival order (deterministic for a seed); see the module docstring."""
    return [text for _, text in labelled_candidates(n, seed)]


def seed_pool() -> list[str]:
    """The pool a run starts with: the 175 Self-Instruct and the 175 BELLE seed instructions."""
    return [r["instruction"] for r in _jsonl("selfinstruct_seed_tasks.jsonl")] + \
        [r["instruction"] for r in _jsonl("belle_zh_seed_tasks.jsonl")]
