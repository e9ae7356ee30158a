"""The self-instruct request: 3 sampled seed tasks and a request for a numbered list.

Alpaca asks text-davinci-003 to *continue* a numbered list: a preamble of requirements,
then "###"-separated examples numbered 1..3 (instruction / input / output, `<noinput>`
when there is none), then "4. Instruction:". Here the same document goes to a chat model
as one user message; the parser accepts the reply whether or not the model repeats the
"4. Instruction:" it was handed. The wording below is our own.

Prompts are a pure function of (seed set, run seed, request index), so a resumed run
sends byte-identical requests under the same deterministic request ids.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from lib.generate.seeds import SeedTask

NOINPUT = "<noinput>"

LANGUAGE_NAMES = {"en": "English", "zh": "Chinese (简体中文)"}

PREAMBLE = """\
We are collecting a varied set of tasks to teach an AI assistant to follow instructions.
Please write {num_tasks} tasks, each with an instruction, an input and an output.

Rules:
1. Vary the verbs and the wording: do not reuse the same verb twice.
2. Vary the kind of task: questions, writing, rewriting, classification, extraction,
   brainstorming, explanation, reasoning, math, code and so on.
3. The assistant can only read and write text: no task may need pictures, sound, files,
   or acting in the world.
4. Write every instruction, input and output in {language}.
5. Keep each instruction to one or two sentences, as a question or an imperative.
6. Give an input only when the task needs one (a short text, list, table or code of
   at most about 100 words); otherwise the input is "<noinput>".
7. The output must be a correct, helpful answer of at most about 100 words.
{extra_rules}
List of {num_tasks} tasks:
"""

# Optional per-request topic hints. A strong teacher varies its tasks by itself; a tiny one
# (the embedded 135M model) mostly copies the examples it was shown, which the novelty rule
# then rejects. Naming a different everyday topic in each request steers it elsewhere.
TOPICS = """cooking; gardening; personal finance; travel; history; astronomy; biology; chemistry; physics;
geography; music theory; sports; fitness; sleep; pets; cars; cycling; weather; oceans; volcanoes;
programming; databases; spreadsheets; email etiquette; job interviews; negotiation; time management;
public speaking; poetry; short stories; grammar; vocabulary; translation; mathematics; probability;
statistics; logic puzzles; board games; movies; photography tips; architecture; recycling; energy;
climate; medicine; nutrition; first aid; law; economics; marketing; small business; customer service;
education; parenting; friendship; holidays; shopping; fashion; languages; philosophy""".replace("\n", " ").split("; ")


@dataclass(frozen=True)
class Request:
    """One chat request of the run, identified deterministically by its index."""

    id: str
    index: int
    seed_ids: tuple[str, ...]
    messages: tuple[dict, ...]
    first_number: int  # the number of the first new task ("4" after 3 examples)
    kind: str = "list"  # "list": asks for new tasks; "answer": asks for one listed task's output


def format_task(number: int, task: SeedTask) -> str:
    inp = task.input if task.input else NOINPUT
    return f"###\n{number}. Instruction: {task.instruction}\n{number}. Input:\n{inp}\n{number}. Output:\n{task.output}\n"


def build_prompt(examples: list[SeedTask], *, num_tasks: int = 20, language: str = "en", topic: str = "") -> str:
    lang_name = LANGUAGE_NAMES.get(language, language)
    extra = f"8. The new tasks are about {topic}.\n" if topic else ""
    body = PREAMBLE.format(num_tasks=num_tasks, language=lang_name, extra_rules=extra)
    for i, task in enumerate(examples, 1):
        body += format_task(i, task)
    body += f"###\n{len(examples) + 1}. Instruction:"
    return body


def request_id(run_seed: int, index: int) -> str:
    return f"gen-{run_seed}-{index:06d}"


def make_request(seeds: list[SeedTask], index: int, *, run_seed: int = 0, num_examples: int = 3,
                 num_tasks: int = 20, language: str = "en", topic_hints: bool = False) -> Request:
    """Request number `index`: `num_examples` seeds sampled by an RNG keyed on (run_seed, index)."""
    rng = random.Random(f"{run_seed}:{index}")
    examples = rng.sample(seeds, min(num_examples, len(seeds)))
    topic = rng.choice(TOPICS) if topic_hints else ""
    prompt = build_prompt(examples, num_tasks=num_tasks, language=language, topic=topic)
    return Request(
        id=request_id(run_seed, index),
        index=index,
        seed_ids=tuple(t.id for t in examples),
        messages=({"role": "user", "content": prompt},),
        first_number=len(examples) + 1,
    )
