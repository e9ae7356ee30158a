"""The cleaning filters, each switchable in `CleanConfig`, each a pure function of records.

Every filter returns which records it drops and why (a short detail string shown in the
report), so `lib.clean.pipeline` can count them, keep examples and write the dropped
records beside the clean ones. Records are Alpaca dicts or ShareGPT dicts; the two texts a
filter looks at come from `prompt_text` / `response_text`.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field

from lib.clean.refusals import IDENTITY_TERMS, PhraseMatcher
from lib.core.errors import UserError
from lib.core.formats import check_format
from lib.core.text import CJK_RANGES


@dataclass
class CleanConfig:
    """Every switch and threshold of the cleaning step (the notebook's parameters map 1:1)."""

    format: str = "auto"                 # "alpaca" | "sharegpt" | "auto" (from the first record)
    on_error: str = "raise"              # malformed input: "raise" (UserError file:line) | "report" (drop, count)
    # empty or too-short replies (GPT4All's "failed responses")
    drop_short: bool = True
    min_output_chars: int = 1            # Alpaca has valid one-word answers ("Positive"), so 1 by default
    # refusals and AI disclaimers (lib/clean/refusals.py)
    drop_refusals: bool = True
    extra_refusal_phrases: tuple[str, ...] = ()
    # replies naming the teacher ("trained by OpenAI", "as ChatGPT", "我是ChatGPT"). On by
    # default, as in FastChat (which blocks "openai" and "chatgpt"): a student trained on them
    # claims to be ChatGPT. Costs replies that discuss OpenAI as a topic; turn off to keep them.
    drop_identity: bool = True
    identity_terms: tuple[str, ...] = IDENTITY_TERMS
    # language: keep `languages`; the detector knows `detect_languages` (small set = fast)
    drop_wrong_language: bool = True
    languages: tuple[str, ...] = ("en", "zh")
    detect_languages: tuple[str, ...] = ("en", "zh", "es", "fr", "de", "pt", "it", "ru", "ja", "ko")
    min_chars_for_language: int = 20     # shorter texts ("3", "Positive") carry no language evidence
    language_confidence: float = 0.7     # drop only when the detector is this sure of the other language
    # duplicates
    drop_exact_duplicates: bool = True
    drop_near_duplicates: bool = True
    near_dup_threshold: float = 0.8      # estimated Jaccard of shingle sets
    shingle_size: int = 3                # words per shingle; CJK text counts each character as a word
    num_perm: int = 128                  # MinHash permutations (error of the Jaccard estimate ~ 1/sqrt)
    dedup_on: str = "all"                # "all" (prompt + reply) | "prompt"
    # per-source diversity (GPT4All dropped the whole P3 subset for this)
    drop_low_diversity_sources: bool = True
    low_diversity_max_share: float = 0.5 # a source whose records have a near-duplicate this often ...
    low_diversity_min_records: int = 20  # ... and that has at least this many records, is dropped whole
    # ShareGPT
    html_to_markdown: bool = True
    fix_roles: bool = True               # drop leading assistant turns and a trailing unanswered human turn
    # token budget (0 = no limit), measured on what the trainer renders: the training
    # tokenizer and the recipe's prompt format (BOS, system prompt, role tags, EOS included)
    max_tokens: int = 0
    prompt_format: str = "alpaca"        # the recipe's format: "alpaca" | "vicuna_v1.1" | "chat"
    long_turn: str = "drop"              # an exchange longer than max_tokens alone: "drop" | "truncate"
    examples_per_filter: int = 3
    seed: int = 1

    def __post_init__(self):
        # Lists may come as strings from notebook parameters: language codes comma-separated,
        # phrases one per line (phrases contain commas: "I'm sorry, but I cannot").
        for name, sep in (("languages", ","), ("detect_languages", ","), ("extra_refusal_phrases", "\n"),
                          ("identity_terms", "\n")):
            value = getattr(self, name)
            if isinstance(value, str):
                value = [v.strip() for v in value.split(sep) if v.strip()]
            setattr(self, name, tuple(value))
        choices = {"format": ("auto", "alpaca", "sharegpt"), "on_error": ("raise", "report"),
                   "dedup_on": ("all", "prompt"), "long_turn": ("drop", "truncate")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"{name}={getattr(self, name)!r} is not known: use one of {', '.join(allowed)}")
        check_format(self.prompt_format)  # the recipe's format, by its one name
        if not 0.0 < self.near_dup_threshold <= 1.0:
            raise UserError(f"near_dup_threshold={self.near_dup_threshold} must be in (0, 1]: 0.8 is a good start")
        if not 0.0 <= self.language_confidence <= 1.0:
            raise UserError(f"language_confidence={self.language_confidence} must be in [0, 1]: 0.7 is a good start")
        if not 0.0 < self.low_diversity_max_share <= 1.0:
            raise UserError(f"low_diversity_max_share={self.low_diversity_max_share} must be in (0, 1]")
        if self.shingle_size < 1 or self.num_perm < 16:
            raise UserError("shingle_size must be >= 1 and num_perm >= 16: try shingle_size=3, num_perm=128")
        if self.max_tokens < 0 or self.min_output_chars < 0:
            raise UserError("max_tokens and min_output_chars must be >= 0 (0 max_tokens = no limit)")
        self.detect_languages = tuple(dict.fromkeys(self.languages + self.detect_languages))


# ----------------------------------------------------------------------------- record texts

def prompt_text(rec: dict) -> str:
    if "text" in rec and "instruction" not in rec:  # a pretraining document (lib/clean/text.py)
        return rec["text"]
    if "conversations" in rec:
        return "\n".join(t["value"] for t in rec["conversations"] if t["from"] != "gpt")
    return rec["instruction"] + ("\n" + rec["input"] if rec.get("input") else "")


def response_text(rec: dict) -> str:
    if "text" in rec and "instruction" not in rec:
        return ""
    if "conversations" in rec:
        return "\n".join(t["value"] for t in rec["conversations"] if t["from"] == "gpt")
    return rec["output"]


def responses(rec: dict) -> list[str]:
    if "conversations" in rec:
        return [t["value"] for t in rec["conversations"] if t["from"] == "gpt"]
    return [rec["output"]]


# ----------------------------------------------------------------------------- simple filters
# Each returns {index: detail} for the records it drops.

def short_outputs(recs: list[dict], min_chars: int) -> dict[int, str]:
    out = {}
    for i, rec in enumerate(recs):
        if "conversations" not in rec and not rec["instruction"].strip():
            out[i] = "empty instruction"
            continue
        replies = [r.strip() for r in responses(rec)]
        if not replies or any(not r for r in replies):
            out[i] = "empty reply"
        elif sum(len(r) for r in replies) < min_chars:
            out[i] = f"reply shorter than {min_chars} chars"
    return out


def refusals(recs: list[dict], matcher: PhraseMatcher) -> dict[int, str]:
    out = {}
    for i, rec in enumerate(recs):
        for reply in responses(rec):
            hit = matcher.refusal(reply)
            if hit:
                out[i] = f"refusal: {hit!r}"
                break
    return out


def identity_mentions(recs: list[dict], matcher: PhraseMatcher) -> dict[int, str]:
    out = {}
    for i, rec in enumerate(recs):
        hit = matcher.identity(response_text(rec))
        if hit:
            out[i] = f"names the teacher: {hit!r}"
    return out


# ----------------------------------------------------------------------------- language

class LanguageDetector:
    """lingua, built for a small set of languages: fast, offline, deterministic."""

    def __init__(self, codes: tuple[str, ...]):
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        langs = []
        for code in codes:
            iso = getattr(IsoCode639_1, code.upper(), None)
            if iso is None:
                raise UserError(f"language code {code!r} is not ISO 639-1: use e.g. en, zh, fr")
            langs.append(Language.from_iso_code_639_1(iso))
        if len(langs) < 2:  # lingua needs two to choose between; a lone language can't be "wrong"
            langs.append(Language.ENGLISH if langs[0] != Language.ENGLISH else Language.CHINESE)
        self._detector = LanguageDetectorBuilder.from_languages(*langs).build()  # models load on first use

    def confidence(self, text: str) -> tuple[str, float]:
        """The most likely language of `text` and its confidence in [0, 1]."""
        best = self._detector.compute_language_confidence_values(text)[0]
        return best.language.iso_code_639_1.name.lower(), best.value

    def detect(self, texts: list[str]) -> list[str | None]:
        found = self._detector.detect_languages_in_parallel_of(texts)
        return [lang.iso_code_639_1.name.lower() if lang is not None else None for lang in found]


def wrong_language(recs: list[dict], cfg: CleanConfig, detector: LanguageDetector | None = None,
                   ) -> tuple[dict[int, str], dict[int, str]]:
    """Returns (dropped {i: detail}, detected {i: code}) — the second fills empty `lang` labels."""
    detector = detector or LanguageDetector(cfg.detect_languages)
    idx, texts = [], []
    for i, rec in enumerate(recs):
        # Mostly the reply: a translation task's prompt may be in another language than asked for.
        # A few hundred characters settle the language; more only costs time (the slowest stage).
        text = (prompt_text(rec)[:200] + "\n" + response_text(rec)[:400]).strip()
        if len(text) >= cfg.min_chars_for_language:
            idx.append(i)
            texts.append(text)
    dropped, detected = {}, {}
    suspects = []
    for i, text, code in zip(idx, texts, detector.detect(texts)):
        if code is None:
            continue  # the detector is unsure: no evidence, keep the record
        detected[i] = code
        if code not in cfg.languages:
            suspects.append((i, text))
    # Names and numbers fool n-gram models ("Jana is 5 inches taller than Kelly" scores 55%
    # Italian), so a suspect is dropped only when the detector is sure of the other language.
    for i, text in suspects:
        code, conf = detector.confidence(text)
        if code not in cfg.languages and conf >= cfg.language_confidence:
            dropped[i] = f"language {code} ({conf:.0%}) not in {','.join(cfg.languages)}"
        else:
            detected.pop(i, None)
    return dropped, detected


# ----------------------------------------------------------------------------- duplicates

# A CJK character is a word of its own (no spaces in Chinese/Japanese); Latin words are runs
# of letters and digits. Punctuation and case are not part of any word.
# Unlike ROUGE-L's tokens (ASCII words only), any script's letters make words here: dedup must
# tell two Russian or Spanish records apart.
_WORD = re.compile(f"[{CJK_RANGES}]|[^\\W_]+")


def words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def dedup_text(rec: dict, on: str) -> str:
    return prompt_text(rec) if on == "prompt" else prompt_text(rec) + "\n" + response_text(rec)


def exact_duplicates(recs: list[dict], on: str = "all") -> dict[int, str]:
    """Same words in the same order after casefolding and dropping punctuation/spacing."""
    seen: dict[bytes, str] = {}
    out = {}
    for i, rec in enumerate(recs):
        key = hashlib.blake2b(" ".join(words(dedup_text(rec, on))).encode(), digest_size=16).digest()
        if key in seen:
            out[i] = f"same text as {seen[key]}"
        else:
            seen[key] = rec["id"]
    return out


def shingles(text: str, n: int) -> set[bytes]:
    w = words(text)
    if len(w) <= n:
        return {" ".join(w).encode()} if w else set()
    return {" ".join(w[k:k + n]).encode() for k in range(len(w) - n + 1)}


@dataclass
class MinHashIndex:
    """MinHash signatures for a list of records, and LSH lookups over them (datasketch)."""

    signatures: list = field(default_factory=list)  # LeanMinHash or None (no words)

    @classmethod
    def build(cls, recs: list[dict], cfg: CleanConfig, progress=None) -> "MinHashIndex":
        from datasketch import LeanMinHash, MinHash

        sets = [shingles(dedup_text(r, cfg.dedup_on), cfg.shingle_size) for r in recs]
        sigs: list = [None] * len(recs)
        todo = [i for i, s in enumerate(sets) if s]
        # bulk() hashes many sets with one numpy pass each; chunks keep the progress bar moving.
        step = 2000
        for k in range(0, len(todo), step):
            chunk = todo[k:k + step]
            for i, m in zip(chunk, MinHash.bulk([sets[i] for i in chunk], num_perm=cfg.num_perm, seed=cfg.seed)):
                sigs[i] = LeanMinHash(m)
            if progress is not None:
                progress.update(len(chunk))
        return cls(sigs)

    def lsh(self, cfg: CleanConfig):
        from datasketch import MinHashLSH

        try:
            return MinHashLSH(threshold=cfg.near_dup_threshold, num_perm=cfg.num_perm)
        except ValueError:
            # Thresholds near 1 want a single band; datasketch needs two. Two bands of
            # num_perm/2 rows still only pair near-identical texts; the Jaccard check decides.
            return MinHashLSH(num_perm=cfg.num_perm, params=(2, cfg.num_perm // 2))

    def subset(self, idx: list[int]) -> "MinHashIndex":
        return MinHashIndex([self.signatures[i] for i in idx])


def near_duplicates(recs: list[dict], index: MinHashIndex, cfg: CleanConfig) -> dict[int, str]:
    """Drop a record when an earlier kept one has estimated Jaccard >= threshold.

    LSH finds candidates; the signature's Jaccard estimate confirms them, so an LSH
    false positive does not cost a good record. The first of each cluster survives.
    """
    lsh = index.lsh(cfg)
    out = {}
    for i, sig in enumerate(index.signatures):
        if sig is None:
            continue
        match = None
        for j in lsh.query(sig):
            if index.signatures[j].jaccard(sig) >= cfg.near_dup_threshold:
                match = j
                break
        if match is not None:
            out[i] = f"near-duplicate of {recs[match]['id']} (J~{index.signatures[match].jaccard(sig):.2f})"
        else:
            lsh.insert(i, sig)
    return out


def source_diversity(recs: list[dict], index: MinHashIndex, cfg: CleanConfig) -> dict[str, dict]:
    """Per source: records, and the share of them with a near-duplicate in the same source."""
    lsh = index.lsh(cfg)
    for i, sig in enumerate(index.signatures):
        if sig is not None:
            lsh.insert(i, sig)
    size: dict[str, int] = defaultdict(int)
    dup: dict[str, int] = defaultdict(int)
    for i, rec in enumerate(recs):
        src = rec.get("source") or ""
        size[src] += 1
        sig = index.signatures[i]
        if sig is None:
            continue
        for j in lsh.query(sig):
            if j != i and (recs[j].get("source") or "") == src and index.signatures[j].jaccard(sig) >= cfg.near_dup_threshold:
                dup[src] += 1
                break
    return {src: {"records": n, "near_dup_share": dup[src] / n} for src, n in size.items()}


def low_diversity_sources(recs: list[dict], diversity: dict[str, dict], cfg: CleanConfig,
                          ) -> tuple[dict[int, str], list[str], list[str]]:
    """Drop every record of a source whose near-duplicate share is over the limit.

    A source is only dropped when other sources remain: with a single source, "low
    diversity" has nothing to be low against and dropping it would leave nothing to train
    on, so the report flags it instead. Returns (dropped {i: detail}, dropped sources, flagged sources).
    """
    bad = [s for s, d in diversity.items()
           if d["records"] >= cfg.low_diversity_min_records and d["near_dup_share"] > cfg.low_diversity_max_share]
    if len(bad) >= len(diversity):
        return {}, [], sorted(bad)
    drop = set(bad)
    out = {i: f"source {rec.get('source') or '(none)'!r} has {diversity[rec.get('source') or '']['near_dup_share']:.0%} "
              f"near-duplicates" for i, rec in enumerate(recs) if (rec.get("source") or "") in drop}
    return out, sorted(drop), []
