"""Refusals, AI disclaimers and teacher-identity mentions: the reviewed phrase lists.

Two kinds of phrase, because a phrase list is only as good as its false positives:

* DISCLAIMERS mark a reply wherever they appear ("As an AI language model", "作为一个AI语言
  模型"). No human-written answer says them, so matching anywhere is safe.
* REFUSAL_OPENINGS are ordinary words that only mean "refusal" at the start of a reply
  ("I'm sorry, but I cannot", "我无法"). "我无法想象" in the middle of a story is not a
  refusal; a reply that *opens* with "我无法回答" is. They match in the first
  `OPENING_CHARS` characters only.

Matching is on a normalised copy (casefolded, curly quotes straightened, whitespace
collapsed), so "I’m  Sorry, but I CAN’T" matches "i'm sorry, but i can't".

Reviewed against GPT4All's and the ShareGPT-unfiltered lists; each entry was checked for
a plausible legitimate use and moved to the openings list (or dropped) when it had one
("as an artificial intelligence" was dropped: role-play prompts ask for exactly that voice).
Role-play of an AI ("Pretend to be an AI language model in 2100") still trips the
disclaimer list; that loss is accepted, as GPT4All accepted it.
Extend either list through `CleanConfig.extra_refusal_phrases`.

"As a language model" alone is not a disclaimer: Vicuna trained on purpose on identity
conversations that say it ("As a language model, I go by the name Vicuna and was trained
by researchers from LMSYS", FastChat's `hardcoded_questions.py`). It marks a reply only
when a denial follows ("As a language model, I don't have ..."), see HEDGED_DISCLAIMERS.

IDENTITY_TERMS are the teacher naming itself, in English and Chinese ("trained by OpenAI",
"as ChatGPT", "我是ChatGPT", "由OpenAI训练"). FastChat's `clean_sharegpt.py` drops every
conversation containing "openai" or "chatgpt"; we do the same for replies (a human asking
"Are you ChatGPT?" is the question Vicuna's identity data answers, so questions are not
searched). A student's own maker ("a language model trained by researchers from LMSYS")
is not the teacher and is never an identity hit.
"""
from __future__ import annotations

import re
import unicodedata

OPENING_CHARS = 80

DISCLAIMERS = (
    # English
    "as an ai language model", "as an ai model", "as an ai assistant",
    "as a large language model", "as a text-based ai",
    "as an ai developed by", "i am an ai language model", "i'm an ai language model",
    "i am just an ai", "i'm just an ai", "i am only an ai", "i'm only an ai",
    "i am an ai and", "i'm an ai and", "i do not have personal opinions", "i don't have personal opinions",
    "i do not have personal beliefs", "i don't have personal beliefs", "i don't have feelings",
    "i do not have feelings", "i do not have emotions", "i don't have emotions",
    "i don't have the ability to browse", "i do not have the ability to browse",
    "i don't have access to real-time", "i do not have access to real-time",
    "my knowledge cutoff", "my training data only", "my training cutoff",
    "not within my programming", "against my programming", "openai's content policy",
    "openai's use case policy", "violates my guidelines", "i'm not programmed to", "i am not programmed to",
    # Chinese
    "作为一个ai语言模型", "作为ai语言模型", "作为一个人工智能语言模型", "作为人工智能语言模型",
    "作为一个ai助手", "作为ai助手", "作为一个人工智能助手",
    "作为一个人工智能", "作为一名人工智能", "作为一个ai", "作为一名ai", "我是一个ai语言模型",
    "我是一个人工智能语言模型", "我只是一个ai", "我只是一个人工智能", "我只是一个语言模型",
    "我没有个人观点", "我没有个人意见", "我没有个人情感", "我没有感情", "我没有能力浏览",
    "我无法访问互联网", "我的知识截止",
)

REFUSAL_OPENINGS = (
    # English
    "i'm sorry, but i cannot", "i'm sorry, but i can't", "i am sorry, but i cannot", "i am sorry, but i can't",
    "i'm sorry, i cannot", "i'm sorry, i can't", "sorry, but i cannot", "sorry, but i can't",
    "i apologize, but i cannot", "i apologize, but i can't", "i apologize, but as",
    "i'm sorry, but as", "i am sorry, but as", "i'm sorry, but i am unable", "i'm sorry, but i'm unable",
    "i'm unable to", "i am unable to", "i cannot fulfill", "i can't fulfill", "i cannot assist",
    "i can't assist", "i cannot help with", "i can't help with", "i cannot provide", "i can't provide",
    "i cannot complete", "i can't complete", "i won't be able to", "i will not be able to",
    "i'm not able to", "i am not able to", "unfortunately, i cannot", "unfortunately, i can't",
    "unfortunately, as", "my apologies, but",
    # Chinese
    "我无法", "我不能", "我不能够", "很抱歉，我无法", "很抱歉，我不能", "抱歉，我无法", "抱歉，我不能",
    "对不起，我无法", "对不起，我不能", "很抱歉，作为", "抱歉，作为", "非常抱歉，我无法",
)

# "As a language model" followed by a denial: the disclaimer. Followed by anything else
# ("..., I go by the name Vicuna") it is an identity statement the recipe wants kept.
# Matched on normalised text (casefolded, NFKC: the full-width comma is ",").
HEDGED_DISCLAIMERS = (
    r"as an? (?:large )?language model,? i(?: am|'m)? (?:do not|don't|cannot|can't|can not|am not|'m not|"
    r"am unable|'m unable|have no|lack|was not|wasn't|will not|won't|could not|couldn't|may not|"
    r"only|just|not|unable)",
    r"作为(?:一个|一种|一名)?(?:大型)?语言模型[,，]?\s*我(?:不|无法|没有|并不|并没有|只|只是|不能|不会)",
)

# The teacher naming itself. Students trained on these replies claim to be ChatGPT. On by
# default (CleanConfig.drop_identity), as in FastChat, which blocks "openai" and "chatgpt".
# Latin terms match as whole ASCII words, so "我是ChatGPT" matches but "GPT4All" does not.
_TEACHER_MODELS = ("gpt-3", "gpt-3.5", "gpt-4", "gpt3", "gpt4", "gpt 3.5", "gpt 4", "text-davinci-003")
IDENTITY_TERMS = (
    "openai", "chatgpt", "chat gpt", "chat-gpt",
    # a teacher model's name is a topic ("GPT-3 was released in 2020") unless the reply claims it
    *(f"{lead}{m}" for m in _TEACHER_MODELS for lead in ("i am ", "i'm ", "as ", "based on ", "based on the ")),
    *(f"{lead}{m}" for m in _TEACHER_MODELS for lead in ("我是", "作为", "基于")),
)

_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\uff0c": "，"})
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Casefold, NFKC (full-width -> ASCII), straight quotes, single spaces."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()
    return _SPACE.sub(" ", text).strip()


def _regex(phrases) -> re.Pattern:
    # Longest first so the reported match is the most specific phrase.
    body = "|".join(re.escape(normalise(p)) for p in sorted(set(phrases), key=len, reverse=True))
    return re.compile(body)


class PhraseMatcher:
    """Find refusals / disclaimers / identity mentions in a reply; returns the phrase or None."""

    def __init__(self, extra_refusals: tuple[str, ...] = (), identity_terms: tuple[str, ...] = IDENTITY_TERMS):
        self._anywhere = _regex(DISCLAIMERS + tuple(extra_refusals))
        self._hedged = re.compile("|".join(HEDGED_DISCLAIMERS))
        # NFKC turns the full-width comma into ",", so openings are normalised the same way.
        self._opening = _regex(REFUSAL_OPENINGS)
        # Identity terms are whole words in Latin script ("gpt4" but not "gpt4all" is a
        # judgement call). The word boundary is ASCII only: in "我是chatgpt" the CJK
        # character before the term is a word character to Python's \w, not a letter of it.
        terms = sorted({normalise(t) for t in identity_terms}, key=len, reverse=True)
        parts = [(r"(?<![a-z0-9_-])" if t[0].isascii() and t[0].isalnum() else "") + re.escape(t)
                 + (r"(?![a-z0-9_])" if t[-1].isascii() and t[-1].isalnum() else "") for t in terms]
        self._identity = re.compile("|".join(parts)) if parts else None

    def refusal(self, reply: str) -> str | None:
        text = normalise(reply)
        m = self._opening.search(text[:OPENING_CHARS])
        if m and m.start() <= 2:  # allow a leading quote, bullet or space
            return m.group(0)
        m = self._anywhere.search(text) or self._hedged.search(text)
        return m.group(0) if m else None

    def identity(self, reply: str) -> str | None:
        if self._identity is None:
            return None
        m = self._identity.search(normalise(reply))
        return m.group(0) if m else None
