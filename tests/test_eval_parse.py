"""Judge-reply parsing: a corpus of real replies from the embedded judge plus hand-made
variants and malformed replies. Unreadable must come back as None (then retried and
reported), never as a guess."""
import json
from pathlib import Path

import pytest

from lib.evaluate.parse import parse_pair, parse_rating

CORPUS = Path(__file__).parent / "fixtures" / "eval_judge_replies.jsonl"

PAIRS = [
    ("8 7\nAssistant 1 was more detailed.", (8, 7)),
    ("8/10 7/10\nBoth were fine.", (8, 7)),
    ("8 / 10, 7 / 10", (8, 7)),
    ("**8** **7**\n\nExplanation...", (8, 7)),
    ("## Scores\n9 3", (9, 3)),
    ("８，７\n解释：……", (8, 7)),
    ("8，7", (8, 7)),
    ("8、6", (8, 6)),
    ("7.5 6", (7.5, 6)),
    ("Assistant 1: 8 Assistant 2: 7", (8, 7)),
    ("Assistant 1: 8/10\nAssistant 2: 4/10\nAssistant 1 explains more.", (8, 4)),
    ("**Assistant 1**: 6\n**Assistant 2**: 9", (6, 9)),
    ("助手1：8分，助手2：7分", (8, 7)),
    ("Here are my scores:\n6 9\nAssistant 2 is more accurate.", (6, 9)),
    ("Scores: 8 and 7", (8, 7)),
    ("Assistant 1 receives a score of 8, while Assistant 2 receives a score of 6.", (8, 6)),
    ("The first assistant's answer was 7. The second assistant's answer was 5.", (7, 5)),
    ("<think>maybe 2 or 3</think>\n9 2", (9, 2)),
    ("10 1", (10, 1)),
    ("Each gets a score from 1 to 10.\n8 6", (8, 6)),
    ("Scores (1-10): 9 4", (9, 4)),
    ("Assistant 1: 8.5 Assistant 2: 7.", (8.5, 7)),
]

MALFORMED = [
    "",
    "   \n  ",
    "Both answers are helpful.",
    "I think Assistant 1 is better.",
    "8",
    "11 3",  # out of range
    "8 7 6",  # three numbers: which two?
    "Assistant 1 gave 3 examples.\nAssistant 2 gave 5.",  # counts, not scores
    "Assistant 1: 8",  # only one score
    "The first line must hold only the two scores: 1 to 10.",  # the scale, echoed by a small judge
    "The first assistant's answer is 10 out of 11 correct, the second assistant's answer is 9 out of 11.",  # counts
]


@pytest.mark.parametrize("reply,expected", PAIRS)
def test_parse_pair_variants(reply, expected):
    assert parse_pair(reply) == tuple(float(x) for x in expected)


@pytest.mark.parametrize("reply", MALFORMED)
def test_parse_pair_refuses_malformed(reply):
    assert parse_pair(reply) is None


@pytest.mark.parametrize("reply,expected", [
    ("The answer is right. Rating: [[7]]", 7), ("Rating: [[9/10]]", 9), ("[[ 3 ]]", 3), ("[8]", 8),
    ("[Rating: 5]\nGood answer.", 5), ("Rating: 6/10", 6), ("评分：[[９]]", 9), ("rating [[8.5]]", 8.5),
])
def test_parse_rating_variants(reply, expected):
    assert parse_rating(reply) == float(expected)


@pytest.mark.parametrize("reply", ["", "Great answer!", "[[11]]", "The Assistant's Answer: 10"])
def test_parse_rating_refuses_malformed(reply):
    assert parse_rating(reply) is None


def test_real_embedded_judge_replies():
    """Every reply the embedded judge actually wrote parses as recorded (checked by hand)."""
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 12
    for row in rows:
        got = parse_pair(row["reply"]) if row["kind"] == "pairwise" else parse_rating(row["reply"])
        expected = row["expected"]
        if expected is not None:
            expected = tuple(expected) if row["kind"] == "pairwise" else expected
        assert got == expected, row["reply"][:200]
    # The corpus must hold both outcomes, or it tests only half the parser.
    assert any(r["expected"] is None for r in rows) and any(r["expected"] is not None for r in rows)
