"""The novelty filter makes exactly rouge_score's ROUGE-L decisions, and catches Chinese near-duplicates."""
from __future__ import annotations

import json
import random

import pytest
from rouge_score import rouge_scorer
from rouge_score.rouge_scorer import _score_lcs

from lib.generate.novelty import NoveltyFilter, rouge_f
from lib.core.text import rouge_tokens, tokens

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def brute_force(pool: list[str], candidates: list[str], threshold: float = 0.7) -> list[bool]:
    """Alpaca's rule: rouge_score against the seeds and everything kept so far."""
    toks = [SCORER._tokenizer.tokenize(t) for t in pool]
    out = []
    for c in candidates:
        ct = SCORER._tokenizer.tokenize(c)
        keep = max((_score_lcs(ct, t).fmeasure for t in toks), default=0.0) <= threshold
        out.append(keep)
        if keep:
            toks.append(ct)
    return out


def light_edits(texts: list[str], n: int, seed: int) -> list[str]:
    """Sample n texts with 0-2 word edits each: many near-duplicates, some exact ones."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choice(texts).split()
        for _ in range(rng.choice([0, 0, 1, 2])):
            if len(words) < 2:
                break
            j = rng.randrange(len(words))
            op = rng.random()
            if op < 0.33:
                del words[j]
            elif op < 0.66:
                words[j] = rng.choice(["new", "short", "the", "simple", "list", "a"])
            else:
                k = rng.randrange(len(words))
                words[j], words[k] = words[k], words[j]
        out.append(" ".join(words))
    return out


def test_tokenizer_matches_rouge_score_on_english():
    samples = ["Write a haiku about the sea!", "What's 2+2? It's 4.", "Ünïcode café — naïve résumé",
               "snake_case and camelCase, K\u212a (Kelvin) and ﬁ ligatures", "", "   ", "1,000.50 dollars"]
    for s in samples:
        assert rouge_tokens(s) == SCORER._tokenizer.tokenize(s), s
        assert tokens(s) == SCORER._tokenizer.tokenize(s), s  # no CJK: identical


def test_cjk_is_tokenized_per_character():
    assert tokens("给出同义词 for AI") == ["给", "出", "同", "义", "词", "for", "ai"]
    assert SCORER._tokenizer.tokenize("给出同义词") == []  # why Alpaca never dedups Chinese


def test_exact_decisions_on_real_instructions(shared_data):
    seeds = [json.loads(l)["instruction"] for l in open(shared_data / "selfinstruct_seed_tasks.jsonl")]
    base = [json.loads(l)["instruction"] for l in open(shared_data / "bench_instructions.jsonl")][:3000]
    # short instructions from the seeds, edited, too: near the 0.7 boundary many F values are exact ties
    cands = light_edits(base, 150, seed=1) + light_edits(seeds, 150, seed=2)
    random.Random(3).shuffle(cands)
    f = NoveltyFilter()
    f.extend(seeds)
    got = f.add_many(cands)
    want = brute_force(seeds, cands)
    assert got == want
    assert 0 < sum(got) < len(got)  # the sample exercises both outcomes


def test_exact_at_the_boundary():
    # LCS/length combinations where F is exactly 0.7 in rationals (7 of 10 tokens vs itself
    # shortened) : rouge_score's float formula decides, and so must we.
    pool = ["a b c d e f g h i j"]
    cands = ["a b c d e f g x y z", "a b c d e f g", "a b c d e f g h", "q r s t u v w",
             "a b c d e f g h i j k l m n", "b c d e f g h i j"]
    f = NoveltyFilter()
    f.extend(pool)
    assert f.add_many(cands) == brute_force(pool, cands)
    assert rouge_f(7, 10, 10) == _score_lcs(list("abcdefgxyz"), list("abcdefghij")).fmeasure


@pytest.mark.parametrize("seed", [0, 1])
def test_random_token_soup_matches_brute_force(seed):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(12)]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 9))) for _ in range(250)]
    f = NoveltyFilter()
    f.extend(texts[:20])
    assert f.add_many(texts[20:]) == brute_force(texts[:20], texts[20:])


def test_chinese_near_duplicates_rejected_distinct_kept(shared_data):
    seeds = [json.loads(l)["instruction"] for l in open(shared_data / "belle_zh_seed_tasks.jsonl")]
    f = NoveltyFilter()
    f.extend(seeds[:100])
    target = "给出下面词语的同义词"
    assert target in seeds[:100]
    one_char = "给出下面词汇的同义词"  # one character changed
    reordered = "下面词语的同义词请给出"  # a phrase moved
    assert not f.add(one_char)
    assert not f.add(reordered)
    distinct = ["请用三句话介绍一下长城的历史。", "把这段英文翻译成中文，并保持原来的语气。", "为一家新开的咖啡店想五个店名。"]
    assert f.add_many(distinct) == [True, True, True]
    # the same pool under rouge_score's own tokenizer would keep the near-duplicates
    assert brute_force(seeds[:100], [one_char]) == [True]


def test_most_similar_is_exact():
    f = NoveltyFilter()
    pool = ["write a poem about the sea", "write a story about a dog", "translate this sentence to french"]
    f.extend(pool)
    best = f.most_similar("write a poem about a dog", k=3)
    assert [t for _, t in best] == ["write a story about a dog", "write a poem about the sea",
                                    "translate this sentence to french"]
    q = SCORER._tokenizer.tokenize("write a poem about a dog")
    for score, text in best:
        assert score == _score_lcs(q, SCORER._tokenizer.tokenize(text)).fmeasure
