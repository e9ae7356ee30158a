"""Parse a teacher's numbered task list into (instruction, input, output) items.

Models drift from the requested format in every possible way: they repeat or skip the
"4. Instruction:" they were handed, renumber (4, 5, 5, 7 or restart at 1), drop the
number, bold the labels (**Instruction:**), put the text on the label's line or the next,
forget the input section, or stop mid-item when they hit max_tokens. The parser keys on
the *labels*, never on the numbers: each "Instruction" label opens an item, "Input" and
"Output" labels fill it, "###" lines and blank padding are separators. A missing input
means "no input"; a missing output or instruction drops the item with a reason. When the
reply ended because of the token limit (finish_reason == "length") the last item is
dropped, as Alpaca does, since its output is probably cut short. Text before the first
Instruction label ("Here are five new tasks:") is not a task.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from lib.generate.prompt import NOINPUT

_LABELS = {
    "instruction": "instruction", "指令": "instruction", "任务": "instruction",
    "input": "input", "输入": "input",
    "output": "output", "输出": "output", "answer": "output", "response": "output",
}
# Optional list number ("4." "4)" "4:"), optional markdown bold/heading, the label, a colon.
_LABEL_RE = re.compile(
    r"^[ \t>#*]*(?:(\d+)\s*[.):：]\s*)?[*_]*\s*(instruction|input|output|answer|response|指令|任务|输入|输出)\s*[*_]*\s*[:：]",
    re.IGNORECASE | re.MULTILINE,
)
_SEPARATOR_RE = re.compile(r"^\s*#{3,}\s*$", re.MULTILINE)
_TRAILING_NUMBER_RE = re.compile(r"\n\s*\d+\s*[.)]?\s*$")


@dataclass
class Item:
    instruction: str
    input: str
    output: str
    position: int  # index of the item in the reply (0-based), for deterministic record ids


@dataclass
class Dropped:
    reason: str
    text: str
    position: int
    instruction: str = ""  # set for "no_output": the task exists, only its answer is missing
    input: str = ""


def _clean(text: str) -> str:
    text = _SEPARATOR_RE.sub("", text)
    text = _TRAILING_NUMBER_RE.sub("", text)  # a dangling "5." that starts the next item
    return text.strip().strip("*").strip()


def parse_tasks(reply: str, *, first_number: int = 4, finish_reason: str | None = "stop") -> tuple[list[Item], list[Dropped]]:
    """Split `reply` into items; returns (items, dropped-with-reason)."""
    text = reply or ""
    marks = list(_LABEL_RE.finditer(text))
    # The prompt ends with "N. Instruction:", so a reply that opens with plain text and then
    # an Input/Output label is the first instruction's body. Text before an Instruction
    # label is a preamble ("Here are the tasks:") and is skipped.
    first_is_instruction = bool(marks) and _LABELS[marks[0].group(2).lower()] == "instruction"
    if not marks or (text[: marks[0].start()].strip() and not first_is_instruction):
        text = f"{first_number}. Instruction: " + text
        marks = list(_LABEL_RE.finditer(text))
    raw: list[dict] = []
    for k, m in enumerate(marks):
        label = _LABELS[m.group(2).lower()]
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        body = _clean(text[m.end(): end])
        if label == "instruction" or not raw:
            raw.append({})
            if label != "instruction":
                raw[-1]["instruction"] = None
        cur = raw[-1]
        if label in cur and cur[label] is not None:
            # A second Input/Output inside one item: the model skipped the next Instruction label.
            raw.append({"instruction": None})
            cur = raw[-1]
        cur[label] = body
    items, dropped = [], []
    for pos, d in enumerate(raw):
        inst, inp, out = d.get("instruction"), d.get("input", ""), d.get("output")
        whole = "\n".join(str(v) for v in (inst, inp, out) if v)
        if finish_reason == "length" and pos == len(raw) - 1:
            dropped.append(Dropped("truncated", whole, pos))
        elif not inst:
            dropped.append(Dropped("no_instruction", whole, pos))
        elif not out:
            if inp.strip().lower() in (NOINPUT, "noinput", "<no input>", "none", "n/a", "无", "<无输入>"):
                inp = ""
            dropped.append(Dropped("no_output", whole, pos, instruction=inst, input=inp))
        else:
            if inp.strip().lower() in (NOINPUT, "noinput", "<no input>", "none", "n/a", "无", "<无输入>"):
                inp = ""
            items.append(Item(instruction=inst, input=inp, output=out, position=pos))
    return items, dropped
