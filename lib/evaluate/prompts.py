"""Judge prompts, written for this project (not copied): what the judge is told to do.

Two families, each a faithful restatement of a published protocol:

* **Pairwise (Vicuna, 2023).** The judge sees one question and two assistants' answers,
  scores each on helpfulness, relevance, accuracy and level of detail from 1 to 10, puts
  the two scores alone on the FIRST line ("8 7"), then explains. The order of the answers
  must not sway it -- and since judges are swayed anyway, `judge.py` asks twice with the
  answers swapped and keeps only verdicts that survive the swap.
* **Single-answer grading (MT-bench, 2023).** The judge grades one answer from 1 to 10 and
  ends with the rating in double brackets, "[[7]]". Two-turn questions show the whole
  dialogue and grade the second reply. For math, reasoning and coding the judge is given a
  reference answer (judges grade arithmetic badly without one).

Every template has a version string; the version goes into each judgment record so a
changed prompt never silently mixes with results from the old one.
"""
from __future__ import annotations

PAIRWISE_VERSION = "shear-pairwise-v1"
SINGLE_VERSION = "shear-single-v1"

# Categories whose answers are checked against a reference answer (MT-bench practice).
REFERENCE_CATEGORIES = frozenset({"math", "reasoning", "coding"})

PAIRWISE_SYSTEM = "You are a fair, careful reviewer of AI assistants' answers."

PAIRWISE_TEMPLATE = """[Question]
{question}

[The Start of Assistant 1's Answer]
{answer_1}
[The End of Assistant 1's Answer]

[The Start of Assistant 2's Answer]
{answer_2}
[The End of Assistant 2's Answer]

[Instructions]
Compare how well the two AI assistants answered the question above. Judge helpfulness, relevance, accuracy and level of detail. Give each assistant an overall score from 1 to 10; a higher score means a better answer.
On the first line write only the two scores, Assistant 1's then Assistant 2's, separated by a space.
From the second line on, explain your scores. Do not let the order in which the answers appear, their length, or the assistants' names affect your judgment."""

SINGLE_SYSTEM = "You are an impartial grader of an AI assistant's answers."

SINGLE_TEMPLATE = """[Instructions]
Grade the AI assistant's answer to the user's question below. Consider helpfulness, relevance, accuracy, depth, creativity and level of detail. Explain briefly and objectively, then give a rating from 1 to 10 in exactly this form, with your number in place of N: "Rating: [[N]]".

[Question]
{question}

[The Start of the Assistant's Answer]
{answer}
[The End of the Assistant's Answer]"""

SINGLE_REFERENCE_TEMPLATE = """[Instructions]
Grade the AI assistant's answer to the user's question below for correctness and helpfulness. A reference answer is given: compare the assistant's answer with it, point out any mistakes, and be objective. Then give a rating from 1 to 10 in exactly this form, with your number in place of N: "Rating: [[N]]".

[Question]
{question}

[The Start of the Reference Answer]
{reference}
[The End of the Reference Answer]

[The Start of the Assistant's Answer]
{answer}
[The End of the Assistant's Answer]"""

SINGLE_MULTITURN_TEMPLATE = """[Instructions]
Below is a two-turn conversation between a user and an AI assistant. Grade ONLY the assistant's reply to the user's SECOND question, taking the first exchange into account. Consider helpfulness, relevance, accuracy, depth, creativity and level of detail. Explain briefly, then give a rating from 1 to 10 in exactly this form, with your number in place of N: "Rating: [[N]]".

<|The Start of the Conversation|>
### User:
{question_1}

### Assistant:
{answer_1}

### User:
{question_2}

### Assistant:
{answer_2}
<|The End of the Conversation|>"""

SINGLE_MULTITURN_REFERENCE_TEMPLATE = """[Instructions]
Below is a two-turn conversation between a user and an AI assistant, followed by reference answers to both questions. Grade ONLY the assistant's reply to the user's SECOND question for correctness and helpfulness, comparing it with the second reference answer and pointing out any mistakes. Then give a rating from 1 to 10 in exactly this form, with your number in place of N: "Rating: [[N]]".

<|The Start of the Conversation|>
### User:
{question_1}

### Assistant:
{answer_1}

### User:
{question_2}

### Assistant:
{answer_2}
<|The End of the Conversation|>

<|The Start of the Reference Answers|>
### Reference answer to the first question:
{reference_1}

### Reference answer to the second question:
{reference_2}
<|The End of the Reference Answers|>"""


# When a reply cannot be read, the judge is asked once more in the same conversation.
# No digits in the reminders: small judges echo them, and an echoed "1 to 10" is not a verdict.
PAIRWISE_REPAIR = ("Your reply did not begin with the two scores. Reply again: the first line must hold only "
                   "Assistant 1's score and Assistant 2's score, separated by a space.")
SINGLE_REPAIR = 'Your reply has no rating in the required form. Give your rating as "Rating: [[N]]", N out of ten.'


def repair_messages(messages: list[dict], reply: str, repair: str) -> list[dict]:
    """The original conversation, the judge's unreadable reply, and a request to fix the format."""
    return [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": repair}]


# One worked example shown before the real question, for judges too small to follow the
# format from instructions alone (the embedded 135M judge reads 0 of 10 replies without it,
# 8 of 10 with it). Small judges also copy its NUMBERS; the both-orders rule then turns
# such copied verdicts into ties, which the order-agreement chart makes visible. Off by
# default: GPT-4-class judges need no example, and the Vicuna protocol shows none.
DEMO_QUESTION = "What is the boiling point of water at sea level in Celsius?"
DEMO_ANSWERS = ("It boils at 100 degrees Celsius at sea level.", "Water boils at 50 degrees.")
DEMO_REPLY = "9 2\nAssistant 1 gives the correct temperature; Assistant 2 is wrong."


def with_demonstration(messages: list[dict]) -> list[dict]:
    """Insert the worked example (a user turn and the judge's model reply) before the real question."""
    demo = pairwise_messages(DEMO_QUESTION, *DEMO_ANSWERS)[1]
    return [messages[0], demo, {"role": "assistant", "content": DEMO_REPLY}, *messages[1:]]


def pairwise_messages(question: str, answer_1: str, answer_2: str) -> list[dict]:
    return [
        {"role": "system", "content": PAIRWISE_SYSTEM},
        {"role": "user", "content": PAIRWISE_TEMPLATE.format(question=question, answer_1=answer_1, answer_2=answer_2)},
    ]


def single_messages(turns: list[str], answers: list[str], *, turn: int = 1,
                    reference: list[str] | None = None) -> list[dict]:
    """Messages grading the answer to turn `turn` (1-based); reference-guided when given."""
    if turn == 1:
        if reference:
            body = SINGLE_REFERENCE_TEMPLATE.format(question=turns[0], reference=reference[0], answer=answers[0])
        else:
            body = SINGLE_TEMPLATE.format(question=turns[0], answer=answers[0])
    elif turn == 2:
        fields = dict(question_1=turns[0], answer_1=answers[0], question_2=turns[1], answer_2=answers[1])
        if reference and len(reference) >= 2:
            body = SINGLE_MULTITURN_REFERENCE_TEMPLATE.format(**fields, reference_1=reference[0], reference_2=reference[1])
        else:
            body = SINGLE_MULTITURN_TEMPLATE.format(**fields)
    else:
        raise ValueError(f"turn must be 1 or 2, not {turn}")
    return [{"role": "system", "content": SINGLE_SYSTEM}, {"role": "user", "content": body}]
