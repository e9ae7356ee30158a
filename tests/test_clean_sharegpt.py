"""ShareGPT cleaning: HTML -> markdown, role order, splitting to the training tokenizer's budget.

    .venv/bin/pytest tests/test_clean_sharegpt.py -q
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib.clean import CleanConfig, clean_file, read_records, write_outputs
from lib.clean.sharegpt import SplitStats, TrainerTokens, fix_roles, html_to_markdown, split_conversation
from lib.core.formats import FORMATS
from train_tokenizers import llama_fast_tokenizer

HTML_REPLY = (
    '<div class="markdown prose"><p>Here is <strong>the</strong> plan:</p><ol><li>read the file</li>'
    '<li>count the <em>words</em></li></ol><h2>Code</h2><pre><div class="bg-black"><span>python</span>'
    '<button>Copy code</button></div><code class="language-python">def count_words(path):\n'
    '    return len(open(path).read().split())\n</code></pre><p>See <a href="https://example.org/docs">the docs</a>.'
    '</p></div>'
)


@pytest.fixture(scope="module")
def tokenizer(embedded_model):
    from lib.clean import load_tokenizer

    return load_tokenizer(str(embedded_model))


def test_html_becomes_markdown():
    md = html_to_markdown(HTML_REPLY)
    assert "<" not in md and ">" not in md.replace("->", "")
    assert "**the**" in md and "*words*" in md
    assert "1. read the file" in md and "2. count the *words*" in md
    assert "## Code" in md
    assert "```python\ndef count_words(path):" in md  # the code fence keeps its language
    assert "Copy code" not in md
    assert "[the docs](https://example.org/docs)" in md


def test_plain_text_is_left_alone():
    text = "Use snake_case names and 2 * 3 = 6; a < b is fine."
    assert html_to_markdown(text) == text


def test_fix_roles():
    conv = {"id": "x", "conversations": [
        {"from": "gpt", "value": "(answer to something before)"},
        {"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"}]}
    fixed, why = fix_roles(conv)
    assert [t["value"] for t in fixed["conversations"]] == ["Q1", "A1"]
    assert "leading assistant" in why and "unanswered" in why
    broken = {"id": "y", "conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"},
                                           {"from": "gpt", "value": "c"}]}
    assert fix_roles(broken) == (None, "turn 1: human where gpt was expected")
    assert fix_roles({"id": "z", "conversations": [{"from": "gpt", "value": "hi"}]})[0] is None


# ------------------------------------------------------------------ splits that fit the trainer

def _recipes() -> list[tuple[str, str, int]]:
    from lib.train.recipes import load_recipe

    out = []
    for path in sorted((Path(__file__).resolve().parent.parent / "lib" / "recipes").glob("*.yaml")):
        r = load_recipe(path.stem)
        out.append((r.name, r.format, r.max_length))
    return out


RECIPES = _recipes()
# Every recipe's (format, max_length), once: alpaca_7b and alpaca_13b, vicuna_7b and vicuna_13b,
# belle_zh and gpt4all_lora render the same. Both tokenizers render every recipe ("chat" with
# SmolLM2's own template and Mistral-Instruct's).
# Recipes in the "text" format (continued pretraining) take documents, not conversations.
_FIRST = {(fmt, n): name for name, fmt, n in reversed(RECIPES) if fmt in FORMATS}
CASES = [(name, tok) for (fmt, _), name in sorted(_FIRST.items()) for tok in ("smollm2", "llama_sp")]


@pytest.fixture(scope="module")
def llama_sp():
    """Mistral-7B v0.1's 32K tokenizer.model (LLaMA's format, byte fallback), non-legacy, with
    Mistral-Instruct's chat template (tests/train_tokenizers.py)."""
    return llama_fast_tokenizer(False)


def long_conversations() -> list[dict]:
    """Conversations far over every budget: many exchanges of varied length, a system turn,
    Chinese, code, and one answer longer than any recipe's max_length."""
    para = ("The deep sea is cold, dark and full of strange life; pressure grows by one atmosphere "
            "every ten metres. ")
    zh = "深海寒冷而黑暗，充满奇异的生命；每下降十米，压力增加一个大气压。"
    code = "```python\ndef depth(p):\n    return (p - 1) * 10\n```\n"
    out = []
    for c in range(3):
        turns = [{"from": "system", "value": "You are an oceanographer. Answer precisely."}] if c == 1 else []
        for k in range(40):
            reps = 1 + (k * 7 + c) % 13
            q = f"Question {k}: tell me more about the ocean at depth {k * 100} m." if c != 2 else f"第{k}个问题：深海是什么样的？"
            a = (para * reps + code * (k % 3 == 0)) if c != 2 else zh * reps
            turns += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
        if c == 0:
            turns[21]["value"] = para * 400  # ~9,000 tokens: longer than every budget alone
        out.append({"id": f"long{c}", "conversations": turns})
    return out


def _pieces(convs, measure, budget, long_turn="drop"):
    stats = SplitStats()
    pieces = []
    for conv in convs:
        ordered, _ = fix_roles(conv)
        pieces += split_conversation(ordered, measure, budget, long_turn, stats)
    return pieces, stats


def _assert_fits(pieces, tok, fmt, max_length):
    """What the trainer does with each piece: nothing is cut, nothing dropped."""
    from lib.clean.formats import sharegpt_to_alpaca
    from lib.core.masking import encode_record

    for p in pieces:
        turns = p["conversations"]
        body = turns[1:] if turns[0]["from"] == "system" else turns
        assert [t["from"] for t in body] == ["human", "gpt"] * (len(body) // 2), p["id"]  # never opens on an answer
        records = sharegpt_to_alpaca(p) if fmt == "alpaca" else [p]
        for rec in records:
            ex, truncated = encode_record(rec, tok, fmt, max_length)
            assert not truncated and len(ex["input_ids"]) <= max_length, (p["id"], len(ex["input_ids"]))


@pytest.mark.parametrize("recipe,tok_name", CASES)
def test_no_split_piece_is_truncated_by_the_trainer(request, shared_data, recipe, tok_name):
    recs, bad, fmt_in = read_records(shared_data / "fastchat_dummy_conversation.json")
    assert fmt_in == "sharegpt" and not bad and len(recs) == 500
    _, fmt, max_length = next(r for r in RECIPES if r[0] == recipe)
    tok = request.getfixturevalue("tokenizer" if tok_name == "smollm2" else "llama_sp")
    convs = recs + long_conversations()
    pieces, stats = _pieces(convs, TrainerTokens(tok, fmt), max_length)
    _assert_fits(pieces, tok, fmt, max_length)
    if fmt != "alpaca":  # Alpaca trains each exchange alone: a conversation never needs cutting
        assert stats.split_conversations >= 2
        assert stats.max_piece_tokens > max_length * 0.8  # pieces are filled, not cut short
    assert stats.dropped_exchanges >= 1 and stats.unencodable_exchanges == 0  # the ~9,000-token answer
    # nothing is lost silently: every exchange is in a piece or counted as dropped
    exchanges = sum(len(fix_roles(c)[0]["conversations"]) // 2 for c in convs)
    kept = sum(len([t for t in p["conversations"] if t["from"] == "gpt"]) for p in pieces)
    assert kept + stats.dropped_exchanges == exchanges


@pytest.mark.parametrize("fmt", ["vicuna_v1.1", "chat"])
def test_truncated_answers_fit_too(tokenizer, fmt):
    pieces, stats = _pieces(long_conversations(), TrainerTokens(tokenizer, fmt), 256, long_turn="truncate")
    assert stats.truncated_exchanges > 0 and stats.dropped_exchanges == 0
    _assert_fits(pieces, tokenizer, fmt, 256)


def test_fastchat_splitter_overflows_where_ours_fits(shared_data, llama_sp):
    """FastChat's split_long_conversation counts each turn's tokens + 6 and no system prompt;
    rendered by the Vicuna v1.1 trainer, some of its pieces are cut. Ours, on the same data, are not."""
    import fastchat.data.split_long_conversation as fc
    from lib.core.masking import encode_record

    recs, _, _ = read_records(shared_data / "fastchat_dummy_conversation.json")
    # FastChat pairs turns from the first one, so it takes no system turn: long1 is left out.
    convs = [fix_roles(c)[0] for c in recs + long_conversations() if c["id"] != "long1"]
    fc.tokenizer, fc.max_length = llama_sp, 1024
    # An exchange longer than the budget alone yields an empty sample there; the trainer skips it.
    theirs = [p for c in convs for p in fc.split_one_sample(c) if p["conversations"]]
    over = sum(encode_record(p, llama_sp, "vicuna_v1.1", 1024)[1] for p in theirs)
    assert over >= 1, over  # 1 of its 521 pieces here; ours: 521 pieces, none cut, the longest exactly 1024
    ours, _ = _pieces(convs, TrainerTokens(llama_sp, "vicuna_v1.1"), 1024)
    _assert_fits(ours, llama_sp, "vicuna_v1.1", 1024)


def test_system_turn_opens_every_piece(tokenizer):
    measure = TrainerTokens(tokenizer, "chat")
    conv = {"id": "s", "conversations": [{"from": "system", "value": "Answer in one word."}] + [
        {"from": r, "value": f"{r} turn number {k} with a few more words to fill the budget"}
        for k in range(6) for r in ("human", "gpt")]}
    pieces = split_conversation(conv, measure, 100)
    assert len(pieces) > 1
    assert all(p["conversations"][0]["from"] == "system" and p["conversations"][1]["from"] == "human" for p in pieces)
    assert [p["id"] for p in pieces] == [f"s_{k}" for k in range(len(pieces))]
    _assert_fits(pieces, tokenizer, "chat", 100)


def test_sharegpt_pipeline_end_to_end(tmp_path, tokenizer):
    convs = [
        {"id": "html", "conversations": [{"from": "human", "value": "How do I count words in a file?"},
                                         {"from": "gpt", "value": HTML_REPLY}]},
        {"id": "long", "conversations": [
            {"from": "human", "value": f"Tell me fact number {k} about the ocean."} if r == "human" else
            {"from": "gpt", "value": f"Ocean fact {k}: " + "the deep sea is cold, dark and full of strange life. " * 3}
            for k in range(8) for r in ("human", "gpt")]},
        {"id": "starts-with-gpt", "conversations": [{"from": "gpt", "value": "Welcome back!"},
                                                    {"from": "human", "value": "What is two plus two?"},
                                                    {"from": "gpt", "value": "Two plus two is four."}]},
        {"id": "bad-order", "conversations": [{"from": "human", "value": "Hello there, how are you today?"},
                                              {"from": "human", "value": "Are you there?"}]},
        {"id": "refuses", "conversations": [{"from": "human", "value": "Write my exam for me please."},
                                            {"from": "gpt", "value": "I'm sorry, but I cannot do your exam for you."}]},
    ]
    src = tmp_path / "sharegpt.json"
    src.write_text(json.dumps(convs))
    cfg = CleanConfig(format="sharegpt", max_tokens=160, languages=("en",), prompt_format="chat")
    res = clean_file(src, cfg, tokenizer=tokenizer, progress=False)
    rep = res.report
    assert rep.stage("roles").dropped == 1 and rep.stage("roles").changed == 1
    assert rep.stage("html").changed == 1
    assert rep.stage("refusal").dropped == 1
    assert rep.split["split_conversations"] == 1
    ids = [c["id"] for c in res.records]
    assert "html" in ids and "starts-with-gpt" in ids and sum(i.startswith("long_") for i in ids) > 1
    html = next(c for c in res.records if c["id"] == "html")
    assert "```python" in html["conversations"][1]["value"] and "<li>" not in html["conversations"][1]["value"]
    paths = write_outputs(res, tmp_path / "run")
    convs_out = [json.loads(x) for x in paths["conversations"].read_text().splitlines()]
    alpaca = [json.loads(x) for x in paths["clean"].read_text().splitlines()]
    assert len(convs_out) == len(res.records)
    assert len(alpaca) == sum(len(c["conversations"]) // 2 for c in convs_out) == rep.output_records_alpaca
    assert all(r["instruction"] and r["output"] for r in alpaca)


def test_alpaca_records_over_the_token_budget_are_dropped(tokenizer):
    from lib.clean import clean_records
    from lib.core.formats import alpaca_prompt

    recs = [{"id": f"r{k}", "instruction": "Repeat the word as often as asked.", "input": f"{k * 10} times",
             "output": " ".join(["echo"] * (k * 10)), "source": "", "lang": ""} for k in range(1, 8)]
    cfg = CleanConfig(max_tokens=80, drop_near_duplicates=False, drop_low_diversity_sources=False,
                      drop_wrong_language=False)
    res = clean_records(recs, cfg, tokenizer=tokenizer, progress=False)

    def n_tokens(r):  # what the trainer sees: the exact Alpaca prompt, the reply and EOS
        return len(tokenizer(alpaca_prompt(r["instruction"], r["input"]) + r["output"],
                             add_special_tokens=False)["input_ids"]) + 1

    want = [r["id"] for r in recs if n_tokens(r) <= 80]
    assert 0 < len(want) < len(recs)
    assert [r["id"] for r in res.records] == want
    assert res.report.stage("token_budget").dropped == len(recs) - len(want)


def test_max_tokens_without_a_tokenizer_is_a_clear_error():
    from lib.clean import clean_records
    from lib.core.errors import UserError

    with pytest.raises(UserError, match="no tokenizer"):
        clean_records([], CleanConfig(max_tokens=10), progress=False)
