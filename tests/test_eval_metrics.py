"""Reference metrics without a judge: language-aware ROUGE-L and reference perplexity."""
import math

import pytest
from rouge_score import rouge_scorer

from lib.evaluate.metrics import answer_length, reference_perplexity, rouge_l, rouge_table
from lib.evaluate.questions import Question


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
