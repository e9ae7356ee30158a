"""Prompt, parser and Alpaca's filters: format drift, truncation, language-aware rules."""
from __future__ import annotations

import pytest

from lib.core.errors import UserError
from lib.generate.filters import count_words, filter_reason
from lib.generate.parse import parse_tasks
from lib.generate.prompt import build_prompt, make_request
from lib.generate.seeds import BUILTIN, load_seed_tasks


def test_builtin_seeds_load_in_both_languages():
    en = load_seed_tasks("", language="en")
    zh = load_seed_tasks("", language="zh")
    assert len(en) >= 20 and len(zh) >= 8
    assert {t.lang for t in en} == {"en"} and {t.lang for t in zh} == {"zh"}
    assert all(filter_reason(t.instruction, language=t.lang) is None for t in en + zh)
    assert len({t.instruction for t in en + zh}) == len(en) + len(zh)


def test_official_seed_sets_load_from_a_path(shared_data):
    en = load_seed_tasks(shared_data / "selfinstruct_seed_tasks.jsonl")
    zh = load_seed_tasks(shared_data / "belle_zh_seed_tasks.jsonl", language="zh")
    assert len(en) == 175 and len(zh) == 175
    assert en[1].instruction == "What is the relation between the given pairs?"
    assert en[1].input.startswith("Night : Day")


def test_bad_seed_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "seeds.jsonl"
    bad.write_text('{"instruction": "ok", "instances": [{"input": "", "output": "x"}]}\n{"name": "no instruction"}\n')
    with pytest.raises(UserError, match=r"seeds.jsonl:2 is not a seed task"):
        load_seed_tasks(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_seed_tasks(tmp_path / "missing.jsonl")


def test_prompt_shows_three_seeds_and_is_deterministic():
    seeds = load_seed_tasks(BUILTIN, language="en")
    a, b = make_request(seeds, 7, run_seed=1), make_request(seeds, 7, run_seed=1)
    assert a == b and a.id == "gen-1-000007"
    text = a.messages[0]["content"]
    assert text.count("###") == 4 and text.rstrip().endswith("4. Instruction:")
    for sid in a.seed_ids:
        task = next(t for t in seeds if t.id == sid)
        assert task.instruction in text
    assert "Chinese" in build_prompt(seeds[:3], language="zh")


def test_parse_continuation_with_noinput_and_separator():
    reply = ("Name three primary colors.\n4. Input:\n<noinput>\n4. Output:\nRed, blue and yellow.\n###\n"
             "5. Instruction: Summarize the text in one sentence.\n5. Input:\nCats sleep a lot. They also play.\n"
             "5. Output:\nCats mostly sleep and play.\n###\n")
    items, dropped = parse_tasks(reply, first_number=4, finish_reason="stop")
    assert [(i.instruction, i.input, i.output) for i in items] == [
        ("Name three primary colors.", "", "Red, blue and yellow."),
        ("Summarize the text in one sentence.", "Cats sleep a lot. They also play.", "Cats mostly sleep and play."),
    ]
    assert dropped == []


def test_parse_survives_numbering_drift_bold_labels_and_missing_sections():
    reply = ("4. Instruction: Give an antonym of happy.\n4. Output: Sad.\n\n"
             "**Instruction:** Convert 3 km to meters.\n**Output:** 3000 meters.\n"
             "9) Instruction: Describe a rainbow.\n9) Input: <noinput>\n"
             "2. Instruction: List two fruits.\nInput: none\nOutput: Apple, pear.\n")
    items, dropped = parse_tasks(reply)
    assert [i.instruction for i in items] == ["Give an antonym of happy.", "Convert 3 km to meters.", "List two fruits."]
    assert items[2].input == ""
    assert [d.reason for d in dropped] == ["no_output"]


def test_truncated_last_item_is_dropped_only_on_length():
    reply = "Say hi politely.\n4. Output: Hello!\n5. Instruction: Count to three.\n5. Output: One, two"
    items, dropped = parse_tasks(reply, finish_reason="length")
    assert [i.instruction for i in items] == ["Say hi politely."]
    assert [d.reason for d in dropped] == ["truncated"]
    items, _ = parse_tasks(reply, finish_reason="stop")
    assert len(items) == 2


def test_preamble_before_the_first_instruction_is_not_a_task():
    reply = "Sure! Here are the new tasks:\n5. Instruction: Name a planet.\n5. Input: <noinput>\n5. Output: Mars."
    items, dropped = parse_tasks(reply)
    assert [(i.instruction, i.output) for i in items] == [("Name a planet.", "Mars.")] and dropped == []


def test_parse_chinese_labels():
    reply = "4. 指令：把下面的句子翻译成英文。\n4. 输入：我喜欢苹果。\n4. 输出：I like apples.\n"
    items, _ = parse_tasks(reply)
    assert items[0].instruction == "把下面的句子翻译成英文。" and items[0].output == "I like apples."


def test_garbage_reply_yields_nothing_but_reasons():
    items, dropped = parse_tasks("1. Instruction:\n1. Input:\n2. Output:\n2. Instruction:\n2. Input:", finish_reason="length")
    assert items == [] and dropped and {d.reason for d in dropped} <= {"no_instruction", "no_output", "truncated"}


@pytest.mark.parametrize("inst,lang,reason", [
    ("Name a fruit.", "en", "too_short"),
    ("Describe the picture in detail for me.", "en", "blacklist"),
    ("Plot a graph of sales by month.", "en", "blacklist"),
    ("Write a program that sorts a list.", "en", "program"),
    ('"Quote" the following sentence back to me.', "en", "leading_punctuation"),
    ("Écris une phrase sur le soleil, s'il te plaît.", "en", "first_char_script"),
    ("请描述一下这张图片里的内容。", "zh", "blacklist"),
    ("写诗", "zh", "too_short"),
    ("【提示】请写一首关于秋天的诗。", "zh", "leading_punctuation"),
    ("请写一首关于秋天的短诗。", "en", "first_char_script"),
    ("请写一首关于秋天的短诗。", "zh", None),
    ("Give three tips for staying healthy.", "en", None),
    ("Mapping words to numbers is called encoding; explain why.", "en", None),  # 'map' is a whole word only
])
def test_alpaca_filters_language_aware(inst, lang, reason):
    assert filter_reason(inst, language=lang) == reason


def test_word_count_for_cjk():
    assert count_words("给出下面词语的同义词") == 5
    assert count_words("Translate 你好 please") == 3
    assert filter_reason("word " * 151, language="en") == "too_long"
