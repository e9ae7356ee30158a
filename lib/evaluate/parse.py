"""Reading scores out of judge replies, robustly, and saying so when it cannot.

Judges do not always follow "two scores on the first line". Replies seen in practice (and
in `tests/fixtures/eval_judge_replies.jsonl`, collected from the embedded judge) include
extra words ("Scores: 8 and 7"), "8/10 7/10", markdown ("**8** **7**"), full-width or
Chinese punctuation ("８，７", "8，7", "8、7"), labelled scores on one or several lines
("Assistant 1: 8 Assistant 2: 7", "助手1：8分"), a preamble line before the scores, or a
reasoning model's <think> block. `parse_pair` tries, in order of trust:

1. labelled scores on the first line ("Assistant 1 ... 8 ... Assistant 2 ... 7");
2. exactly two numbers on the first line (the Vicuna contract);
3. labelled scores anywhere ("Assistant 1's score: 8" ... "Assistant 2: 7");
4. the first line anywhere that holds only two numbers ("Here are my scores:\\n8 7").

The scale itself ("scores from 1 to 10", which small judges echo) is never read as scores.

Anything else returns None: the caller retries and, failing that, records the reply as
unparsed -- a guess would be worse than a reported gap. Scores outside 0-10 are rejected.
"""
from __future__ import annotations

import re
import unicodedata

MAX_SCORE = 10.0
_NUM = r"(\d+(?:\.\d+)?)"
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_MARKDOWN = re.compile(r"[*_#`>]")
_DENOMINATOR = re.compile(r"\s*(?:/|out of|of)\s*10(?:\.0)?\b|\s*分(?=\D|$)|\s*points?\b", re.I)
_ORDINAL = re.compile(r"\b(?:the\s+)?(first|second)\s+assistant\b", re.I)
# "from 1 to 10", "(1-10)": the scale named in the prompt, which small judges echo back.
_SCALE = re.compile(r"\(?(?<!assistant )(?<!assistant)(?<!助手)\b(?:from\s+)?1\s*(?:to|-|–|~)\s*10\b\)?", re.I)
_LABEL = r"(?:assistant|助手|回答|答案|model|answer)\s*(?:#|no\.?)?\s*"
# "Assistant 1: 8", "Assistant 1 score: 8", "Assistant 1's score is 8", "助手1：8分".
# A number followed by a denominator other than 10 ("10 out of 11 correct") is a count, not a score.
_NOT_COUNT = r"(?!\d)(?!\.\d)(?!\s*(?:/|out of|of)\s*(?!10(?:\.0)?\b)\d)"
_LABELLED_TIGHT = re.compile(
    _LABEL + r"([12])(?!\d)(?:'s)?\s*(?:answer|response)?\s*(?:overall\s*)?(?:score|rating|得分|评分|分数)?\s*"
    r"(?:is|was|of|=|:|：|-|–)?\s*" + _NUM + _NOT_COUNT,
    re.I,
)
# "Assistant 1 receives a score of 8" / "Assistant 1 gets an overall rating of 8".
_LABELLED_LOOSE = re.compile(
    _LABEL + r"([12])(?!\d)[^\d\n]{0,40}?(?:score|rating|得分|评分|分数)[^\d\n]{0,12}?" + _NUM + _NOT_COUNT, re.I
)
_SCORE_LINE = re.compile(
    r"^\s*(?:(?:final\s*)?(?:scores?|ratings?|得分|评分|分数)\s*[:：]?\s*)?" + _NUM
    + r"\s*(?:[,;|&/]|\band\b|和|与|\s)\s*" + _NUM + r"\s*[.。!]?\s*$",
    re.I,
)


def normalize(text: str) -> str:
    """Full-width digits and punctuation to ASCII, markdown and <think> blocks removed."""
    t = unicodedata.normalize("NFKC", text or "")
    t = _THINK.sub("", t)
    t = t.replace("、", ",").replace("；", ";").replace("：", ":")
    # "the first assistant('s answer)" says what "Assistant 1" says.
    t = _ORDINAL.sub(lambda m: f"Assistant {1 if m.group(1).lower() == 'first' else 2}", t)
    return _MARKDOWN.sub("", t)


def _in_range(*xs: float) -> bool:
    return all(0.0 <= x <= MAX_SCORE for x in xs)


def _labelled(text: str) -> tuple[float, float] | None:
    found: dict[str, float] = {}
    for pattern in (_LABELLED_TIGHT, _LABELLED_LOOSE):
        for m in pattern.finditer(text):
            found.setdefault(m.group(1), float(m.group(2)))
        if "1" in found and "2" in found:
            break
    if "1" in found and "2" in found and _in_range(found["1"], found["2"]):
        return found["1"], found["2"]
    return None


def _two_numbers(line: str) -> tuple[float, float] | None:
    line = _DENOMINATOR.sub(" ", line)
    nums = [float(x) for x in re.findall(_NUM, line)]
    if len(nums) == 2 and _in_range(*nums):
        return nums[0], nums[1]
    return None


def parse_pair(reply: str) -> tuple[float, float] | None:
    """(score of assistant 1, score of assistant 2), or None when the reply holds no clear pair."""
    lines = [ln.strip() for ln in _SCALE.sub(" ", normalize(reply)).splitlines() if ln.strip()]
    if not lines:
        return None
    first = lines[0]
    if re.search(_LABEL + r"[12]", first, re.I):
        got = _labelled(first)
        if got:
            return got
    else:
        got = _two_numbers(first)
        if got:
            return got
    got = _labelled("\n".join(lines))
    if got:
        return got
    for ln in lines:
        m = _SCORE_LINE.match(_DENOMINATOR.sub(" ", ln))
        if m and _in_range(float(m.group(1)), float(m.group(2))):
            return float(m.group(1)), float(m.group(2))
    return None


_BRACKETS2 = re.compile(r"\[\[\s*" + _NUM + r"\s*(?:/\s*10)?\s*\]\]")
_BRACKETS1 = re.compile(r"\[\s*" + _NUM + r"\s*(?:/\s*10)?\s*\]")
_RATING_WORD = re.compile(r"(?:rating|score|评分|得分)\s*(?:is|of)?\s*[:=]?\s*" + _NUM + r"(?:\s*/\s*10)?", re.I)


def parse_rating(reply: str) -> float | None:
    """The MT-bench "[[rating]]" (1-10); falls back to "[7]" and then "Rating: 7"."""
    t = _SCALE.sub(" ", normalize(reply))
    for pattern in (_BRACKETS2, _BRACKETS1, _RATING_WORD):
        m = pattern.search(t)
        if m:
            x = float(m.group(1))
            return x if _in_range(x) else None
    return None
