"""Reference metrics without a judge: language-aware ROUGE-L and reference perplexity."""
import json
import math

import pytest
from rouge_score import rouge_scorer

from lib.core.text import CJK
from lib.evaluate import metrics
from lib.evaluate.metrics import answer_length, reference_perplexity, rouge_l, rouge_table
from lib.evaluate.questions import Question
from lib.generate.novelty import NoveltyFilter


def test_rouge_l_matches_rouge_score_on_english():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for a, b in [("the cat sat on the mat", "the cat is on the mat"), ("Buy two boxes and two muffins.", "two boxes, 2 muffins: $26")]:
        assert rouge_l(a, b) == pytest.approx(scorer.score(b, a)["rougeL"].fmeasure)


def test_rouge_l_counts_chinese_characters():
    # rouge_score alone sees no tokens in Chinese and scores 0.
    assert rouge_l("苹果、香蕉、葡萄", "苹果、香蕉和葡萄") > 0.8
    assert rouge_l("苹果", "汽车") == 0.0
    assert rouge_l("", "x") == 0.0
    assert answer_length("我爱 Python code") == 4


def seed_texts(path) -> list[str]:
    """Every instruction, input and output of a Self-Instruct-schema seed file."""
    out = []
    for line in open(path, encoding="utf-8"):
        rec = json.loads(line)
        first = (rec.get("instances") or [{}])[0]
        out += [rec["instruction"], first.get("input", ""), first.get("output", "")]
    return [t for t in out if t.strip()]


def test_evaluation_and_novelty_share_one_rouge_tokenizer(shared_data):
    """Evaluation's ROUGE-L once fell back, silently, to a narrower regex than the novelty filter's
    (it imported a module that did not exist). Both now tokenize English and Chinese alike, and
    English exactly as rouge_score (the original) does."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    novelty = NoveltyFilter()
    en = seed_texts(shared_data / "selfinstruct_seed_tasks.jsonl")
    zh = seed_texts(shared_data / "belle_zh_seed_tasks.jsonl")
    assert len(en) > 300 and len(zh) > 300
    # CJK compatibility and Extension B ideographs: what the narrower regex left out.
    for text in en + zh + ["\uf900\ufa0e 與 \U00020000\U0002a6d6 compatibility and Extension B"]:
        assert metrics.tokens(text) == novelty.tokenize(text), text
    latin = [t for t in en if not CJK.search(t)]  # a few seed tasks translate into Chinese
    assert len(latin) > 300
    for text in latin:
        assert metrics.tokens(text) == scorer._tokenizer.tokenize(text), text
    assert sum(map(len, map(metrics.tokens, zh))) > sum(map(len, zh)) / 2  # Chinese has its tokens
    # ... and the same ROUGE-L F: evaluation's score of a pair is the novelty filter's.
    for texts in (en, zh):
        for a, b in zip(texts[:120], texts[1:121]):
            pool = NoveltyFilter()
            pool.extend([b])
            assert rouge_l(a, b) == pytest.approx(pool.most_similar(a)[0][0], abs=1e-12), (a, b)
    for a, b in zip(latin[:120], latin[1:121]):
        assert rouge_l(a, b) == pytest.approx(scorer.score(b, a)["rougeL"].fmeasure, abs=1e-12), (a, b)


def test_rouge_table_by_model_and_language():
    qs = [Question("a", ["q"], lang="en", reference=["red green blue"]),
          Question("b", ["问"], lang="zh", reference=["红绿蓝"]), Question("c", ["no ref"])]
    table = rouge_table(qs, {"m": {"a": ["red green blue"], "b": ["红绿"], "c": ["x"]}})
    assert table["m"]["n"] == 2 and table["m"]["by_lang"]["en"] == 1.0 and 0.7 < table["m"]["by_lang"]["zh"] < 1.0


def test_reference_perplexity_prefers_sense(embedded_model):
    """The embedded model finds a sensible reference far less surprising than a scrambled one."""
    q = Question("p", ["What is the capital of France?"], reference=["The capital of France is Paris."])
    scrambled = Question("p", ["What is the capital of France?"], reference=["Paris is. France capital the of The"])
    good = reference_perplexity(str(embedded_model), "chat", [q])
    bad = reference_perplexity(str(embedded_model), "chat", [scrambled])
    assert good["tokens"] > 5 and math.isfinite(good["perplexity"])
    assert good["perplexity"] < bad["perplexity"]
    assert math.isnan(reference_perplexity(str(embedded_model), "chat", [Question("n", ["x"])])["perplexity"])
