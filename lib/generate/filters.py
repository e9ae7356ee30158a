"""Alpaca's heuristic filters on a generated instruction, made language-aware.

Alpaca drops an instruction when it has <= 3 or > 150 words, contains a word from its
blacklist (tasks a text model cannot do: images, files, audio...), starts with
"Write a program", starts with punctuation, or starts with a non-ASCII character. The
last rule silently drops every Chinese instruction, so here it applies per language:
for English the first character must be ASCII; for Chinese it must be a CJK character
or an ASCII letter/digit.

Word count: whitespace-separated words, except that each CJK character counts as half a
word (Chinese words average about two characters), so "给出下面词语的同义词" (10
characters) is 5 words and the 4..150 word limits mean about 8..300 characters.
"""
from __future__ import annotations

import re
import string
import unicodedata

from lib.core.text import is_cjk_char

MIN_WORDS = 4
MAX_WORDS = 150

# Alpaca's blacklist, verbatim (as data: it defines the baseline's behaviour) ...
BLACKLIST_EN = [
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
]
# ... and the same ideas in Chinese (substring match: Chinese has no word boundaries).
BLACKLIST_ZH = ["图片", "图像", "照片", "图表", "文件", "地图", "绘制", "画图", "视频", "音频", "音乐", "流程图", "示意图"]
_BLACKLIST_RE = re.compile(r"\b(" + "|".join(map(re.escape, BLACKLIST_EN)) + r")\b", re.IGNORECASE)

REASONS = ("too_short", "too_long", "blacklist", "program", "leading_punctuation", "first_char_script")


def count_words(text: str) -> float:
    cjk = sum(1 for c in text if is_cjk_char(c))
    rest = "".join(" " if is_cjk_char(c) else c for c in text)
    return len(rest.split()) + cjk / 2


def _is_punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def filter_reason(instruction: str, *, language: str = "en") -> str | None:
    """None if Alpaca's rules keep `instruction`, else the name of the rule that drops it."""
    inst = instruction.strip()
    n = count_words(inst)
    if n < MIN_WORDS:
        return "too_short"
    if n > MAX_WORDS:
        return "too_long"
    if _BLACKLIST_RE.search(inst) or any(w in inst for w in BLACKLIST_ZH):
        return "blacklist"
    if inst.startswith("Write a program"):
        return "program"
    first = inst[0]
    if _is_punctuation(first):
        return "leading_punctuation"
    if language == "zh":
        if not (is_cjk_char(first) or (first.isascii() and first.isalnum())):
            return "first_char_script"
    elif not first.isascii():
        return "first_char_script"
    return None
