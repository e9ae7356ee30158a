"""Text rules shared by every phase: the CJK class, the language guess, ROUGE-L tokens, token bounds.

**CJK class.** `CJK_RANGES` is the one set of characters written without spaces and handled
one by one: Han ideographs (Unified, Extensions A-F, compatibility), kana and Hangul
syllables. CJK punctuation is *not* in it. Generation's filters, the novelty rule,
evaluation's ROUGE-L, cleaning's dedup words and the Chinese vocabulary merge all use it.

**Language guess** (`guess_lang`): 'zh' when CJK characters are at least a tenth of the
text's length (and at least 2), else 'en'. A cheap offline rule for labelling a question or
an instruction; cleaning's language filter is real language detection (lingua) and a
different concept. Chinese instructions routinely carry English inputs, code or names (4 of
BELLE's 175 seed tasks, instruction plus input: "把下面的英语句子翻译成中文。 She went to
school ..."), so a rule on the *share* of CJK characters (generation once used >= 25%)
calls them English; an English text needs CJK for a tenth of its length before it is called
Chinese, so one quoted word in a sentence stays English.

**ROUGE-L tokens** (`tokens`): English keeps `rouge_score`'s default tokenizer *exactly*
(lower-case, every run of characters outside `[a-z0-9]` is a separator, no stemming), so the
novelty filter makes the same decisions as Alpaca's `scorer._tokenizer.tokenize`. That
tokenizer throws away every non-ASCII character, so a Chinese instruction has no tokens at
all, scores 0 against everything and is never deduplicated. Here, after lower-casing, each
CJK character is one token and everything else is tokenized as `rouge_score` does. Chinese
has no spaces and most words are one or two characters, so per-character tokens make
ROUGE-L behave like a character-level edit similarity: one changed character or a swapped
phrase in a 15-character instruction leaves the LCS far above 0.7, while two unrelated
instructions share only function characters (的, 一, 个). For text without CJK characters
the output is identical to `rouge_score`'s. Generation's novelty filter and evaluation's
ROUGE-L both use `tokens` (tested on real English and Chinese seed tasks).

**Token bounds** (`prompt_token_bound`): the most tokens a chat prompt can cost, without the
model's tokenizer -- what the budget guard reserves for.
"""
from __future__ import annotations

import re

# Ranges of characters that are written without spaces and tokenized one by one.
CJK_RANGES = (
    "\u3040-\u309f"  # Hiragana
    "\u30a0-\u30ff"  # Katakana
    "\u3400-\u4dbf"  # CJK Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0002fa1f"  # CJK Extensions B-F and supplements
)
CJK = re.compile(f"[{CJK_RANGES}]")
# rouge_score: lower(), sub(r"[^a-z0-9]+", " "), split, keep r"^[a-z0-9]+$" -- which is
# the same as findall(r"[a-z0-9]+") on the lower-cased text.
_TOKEN = re.compile(f"[a-z0-9]+|[{CJK_RANGES}]")
_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")

# Role markers and the assistant header of a chat template; per message, and once per call.
MESSAGE_OVERHEAD_TOKENS = 4
CHAT_OVERHEAD_TOKENS = 16


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in `text` as its JSON escape ("\\ud83d"), or None. JSON may
    escape half of an emoji's UTF-16 pair ("\\ud83d" alone): Python reads it, but no tokenizer,
    language detector or UTF-8 writer accepts it, so a record holding one is refused up front."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"\\u{ord(text[e.start]):04x}"
    return None


def is_cjk_char(ch: str) -> bool:
    return bool(CJK.match(ch))


def guess_lang(text: str) -> str:
    """'zh' when at least max(2, len/10) characters are CJK, else 'en' (why: the module docstring)."""
    return "zh" if len(CJK.findall(text)) >= max(2, len(text) // 10) else "en"


def rouge_tokens(text: str) -> list[str]:
    """`rouge_score`'s default tokenizer (no stemmer), reimplemented for speed."""
    return _ROUGE_TOKEN.findall(text.lower())


def tokens(text: str) -> list[str]:
    """ROUGE-L tokens: rouge_score's for Latin text, one token per CJK character."""
    return _TOKEN.findall(text.lower())


def prompt_token_bound(messages) -> int:
    """An upper bound on a chat prompt's tokens without the model's tokenizer.

    Every byte-level BPE token (GPT-4o, Llama, Qwen, SmolLM...) covers at least one UTF-8
    byte, so bytes + the template's few tokens bound the count from above. Characters do
    NOT: one Chinese character is 3 bytes and may be 2-3 tokens, an emoji 4 bytes.
    """
    return sum(len(m["content"].encode("utf-8")) + MESSAGE_OVERHEAD_TOKENS for m in messages) + CHAT_OVERHEAD_TOKENS
