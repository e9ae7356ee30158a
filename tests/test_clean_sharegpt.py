"""ShareGPT cleaning: HTML -> markdown, role order, splitting to the training tokenizer's budget.

    .venv/bin/pytest tests/test_clean_sharegpt.py -q
"""
from __future__ import annotations

import json

import pytest

from lib.clean import CleanConfig, clean_file, read_records, write_outputs
from lib.clean.sharegpt import SplitStats, TokenCounter, fix_roles, html_to_markdown, split_conversation

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


@pytest.mark.parametrize("budget,long_turn", [(40, "drop"), (80, "drop"), (40, "truncate")])
def test_dummy_conversations_split_within_budget(shared_data, tokenizer, budget, long_turn):
    recs, bad, fmt = read_records(shared_data / "fastchat_dummy_conversation.json")
    assert fmt == "sharegpt" and not bad and len(recs) == 500
    counter = TokenCounter(tokenizer, overhead=5)
    stats = SplitStats()
    pieces = []
    for conv in recs:
        ordered, _ = fix_roles(conv)
        pieces += split_conversation(ordered, counter, budget, long_turn, stats)
    assert stats.split_conversations > 0  # the budget is small enough to force splits
    for p in pieces:
        turns = p["conversations"]
        assert turns[0]["from"] == "human", p["id"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        # counted independently of the counter's cache, with the training tokenizer itself
        n = sum(len(tokenizer(t["value"], add_special_tokens=False)["input_ids"]) + 5 for t in turns)
        assert n <= budget, (p["id"], n)
    if long_turn == "truncate":
        assert stats.truncated_exchanges > 0 and stats.dropped_exchanges == 0
    # nothing is lost silently: every exchange is in a piece, dropped or truncated
    exchanges = sum(len(fix_roles(c)[0]["conversations"]) // 2 for c in recs)
    assert sum(len(p["conversations"]) // 2 for p in pieces) + stats.dropped_exchanges == exchanges


def test_system_turn_opens_every_piece(tokenizer):
    counter = TokenCounter(tokenizer, overhead=5)
    conv = {"id": "s", "conversations": [{"from": "system", "value": "Answer in one word."}] + [
        {"from": r, "value": f"{r} turn number {k} with a few more words to fill the budget"}
        for k in range(6) for r in ("human", "gpt")]}
    pieces = split_conversation(conv, counter, 60)
    assert len(pieces) > 1
    assert all(p["conversations"][0]["from"] == "system" and p["conversations"][1]["from"] == "human" for p in pieces)
    assert [p["id"] for p in pieces] == [f"s_{k}" for k in range(len(pieces))]


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
    cfg = CleanConfig(format="sharegpt", max_tokens=128, languages=("en",))
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
    from lib.train.templates import alpaca_prompt

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
    from lib.errors import UserError

    with pytest.raises(UserError, match="no tokenizer"):
        clean_records([], CleanConfig(max_tokens=10), progress=False)
