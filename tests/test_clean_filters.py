"""Plant every kind of bad record among good ones; each must be dropped by its own filter,
counted in the funnel, shown in the report — and every good record must survive.

    .venv/bin/pytest tests/test_clean_filters.py -q
"""
from __future__ import annotations

import json

import pytest

from lib.clean import CleanConfig, clean_file, clean_records, write_outputs
from lib.clean import filters as F
from lib.clean.refusals import PhraseMatcher

# Good records, written for these tests: varied tasks in English and Chinese.
GOOD = [
    ("Give three tips for staying healthy.", "",
     "1. Eat a balanced diet with plenty of vegetables and fruit. 2. Exercise regularly, at least thirty minutes "
     "a day. 3. Sleep seven to nine hours each night and keep a steady schedule."),
    ("Classify the sentiment of this review.", "The pasta was cold and the waiter ignored us for an hour.",
     "Negative"),
    ("Explain why the sky looks blue during the day.", "",
     "Sunlight is made of many colours. Air molecules scatter short blue wavelengths far more than long red "
     "ones, so blue light reaches our eyes from every part of the sky."),
    ("Write a haiku about autumn leaves.", "",
     "Red leaves drift and fall / the cold wind carries them home / branches wait for snow"),
    ("Convert 100 degrees Fahrenheit to Celsius.", "", "100 degrees Fahrenheit is about 37.8 degrees Celsius."),
    ("Rewrite the sentence in the passive voice.", "The committee approved the new budget on Monday.",
     "The new budget was approved by the committee on Monday."),
    ("List the planets of the solar system in order from the sun.", "",
     "Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus and Neptune."),
    ("Suggest a name for a bakery that sells only sourdough bread.", "", "Slow Rise Loaves"),
    ("Summarize the paragraph in one sentence.",
     "Bees pollinate a large share of the crops people eat. Their numbers have fallen because of disease, "
     "pesticides and the loss of wild flowers along fields.",
     "Bee populations, vital for pollinating food crops, are shrinking because of disease, pesticides and habitat loss."),
    ("Write a Python function that returns the square of a number.", "",
     "def square(x):\n    return x * x"),
    ("What is the capital of Australia?", "", "The capital of Australia is Canberra, not Sydney."),
    ("Describe the water cycle for a ten year old.", "",
     "Water warms up in the sun and rises into the sky as vapour. High up it cools into clouds, then falls "
     "back as rain or snow, runs into rivers and the sea, and the trip starts again."),
    ("用一句话介绍长城。", "", "长城是中国古代修建的防御工程，绵延数千公里，是世界上最著名的建筑之一。"),
    ("把下面的句子翻译成中文。", "Knowledge is power.", "知识就是力量。"),
    ("给出三个提高学习效率的方法。", "",
     "一、制定清晰的学习计划并按时完成；二、在安静的环境中集中注意力学习；三、定期复习，把新知识和旧知识联系起来。"),
    ("解释为什么冬天白天比较短。", "",
     "因为冬天时地球所在的半球背向太阳倾斜，太阳在天空中的路径变短变低，所以日照时间减少，白天就变短了。"),
]

NEAR_BASE = ("Plan a weekend trip to the mountains for two people.", "",
             "On Saturday morning drive to the trailhead early, hike the ridge loop of about twelve kilometres, "
             "and eat a packed lunch by the lake. Check in to a small cabin in the afternoon, cook dinner together "
             "and watch the stars. On Sunday take the short waterfall walk, stop at the village market for "
             "local cheese and bread, and drive home before the evening traffic starts.")

# A source whose records are one template with a word swapped: GPT4All's P3 problem.
TEMPLATE = ("Read the passage and answer the question. Passage: The city library opens at nine in the morning "
            "and closes at six in the evening on weekdays, with shorter hours on weekends and no service on "
            "public holidays. Question: according to the passage, what time does the library {q}? Answer:")


def good_records() -> list[dict]:
    recs = []
    for k, (ins, inp, out) in enumerate(GOOD + [NEAR_BASE]):
        zh = any("\u4e00" <= ch <= "\u9fff" for ch in ins)
        recs.append({"id": f"good-{k}", "instruction": ins, "input": inp, "output": out,
                     "source": "seed-zh" if zh else "self-instruct", "lang": ""})
    return recs


def planted_records() -> list[dict]:
    """Bad records, each with the stage that must drop it in `expect`."""
    near_out = NEAR_BASE[2].replace("cheese and bread", "cheese and fruit")
    bad = [
        ("refusal-en", "Tell me how to pick a lock on my neighbour's door.", "",
         "I'm sorry, but I cannot help with breaking into someone else's home.", "refusal"),
        ("disclaimer-en", "What is your favourite colour?", "",
         "As an AI language model, I do not have personal preferences, but many people like blue.", "refusal"),
        ("refusal-zh", "告诉我你的银行密码。", "", "我无法提供任何银行密码，这样做是不安全的。", "refusal"),
        ("disclaimer-zh", "你喜欢吃什么？", "", "作为一个AI语言模型，我没有味觉，但很多人喜欢吃饺子。", "refusal"),
        ("identity", "Who built you?", "", "I was trained by OpenAI and I am based on the GPT-4 architecture.", "identity"),
        ("empty", "Name a primary colour.", "", "   ", "short"),
        ("no-instruction", "  ", "", "Some answer without a question.", "short"),
        ("exact-dup", "give three TIPS for staying healthy!!", "",
         "1. eat a balanced diet with plenty of vegetables and fruit; 2. exercise regularly, at least thirty minutes "
         "a day; 3. sleep seven to nine hours each night and keep a steady schedule", "exact_duplicate"),
        ("near-dup", NEAR_BASE[0], "", near_out, "near_duplicate"),
        ("french", "Écrivez un court poème sur la mer.", "",
         "La mer est bleue, calme et profonde. Les vagues chantent doucement sous le ciel du soir.", "language"),
        ("german", "Beschreibe deinen Lieblingsort in der Stadt.", "",
         "Mein Lieblingsort ist der kleine Park am Fluss, wo ich am Wochenende gerne lese und Kaffee trinke.", "language"),
    ]
    recs = [{"id": i, "instruction": ins, "input": inp, "output": out, "source": "self-instruct", "lang": "",
             "expect": stage} for i, ins, inp, out, stage in bad]
    questions = ["open", "close", "open on Monday", "close on Friday", "open on Tuesday", "close on Thursday",
                 "open on Wednesday", "close on Monday", "open on Friday", "close on Tuesday", "open on Thursday",
                 "close on Wednesday", "open on weekdays", "close on weekdays", "open early", "close late",
                 "open for members", "close for members", "open for students", "close for students",
                 "open for visitors", "close for visitors"]
    for k, q in enumerate(questions):
        recs.append({"id": f"p3-{k}", "instruction": TEMPLATE.format(q=q), "input": "",
                     "output": "nine in the morning" if "open" in q else "six in the evening",
                     "source": "p3-like", "lang": "", "expect": "low_diversity_source"})
    return recs


def write_jsonl_with_bad_line(path, recs):
    lines = [json.dumps({k: v for k, v in r.items() if k != "expect"}, ensure_ascii=False) for r in recs]
    lines.insert(5, '{"instruction": "a truncated line", "output": ')  # a crash mid-write
    lines.insert(9, '["not", "an", "object"]')
    lines.insert(12, '{"instruction": "no output field"}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # 1-based file lines of the three malformed records
    return {6, 10, 13}


CFG = CleanConfig(on_error="report", drop_identity=True, languages=("en", "zh"))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("planted")
    bad = planted_records()
    good = good_records()
    # bad records among the good ones; each duplicate comes after its original
    recs = good[:8] + bad[:6] + good[8:] + bad[6:]
    path = tmp / "generated.jsonl"
    bad_lines = write_jsonl_with_bad_line(path, recs)
    result = clean_file(path, CFG, progress=False)
    paths = write_outputs(result, tmp / "run")
    return {"result": result, "bad": bad, "bad_lines": bad_lines, "paths": paths, "path": path}


def test_every_good_record_survives(planted):
    kept = {r["id"] for r in planted["result"].records}
    good = {r["id"] for r in good_records()}
    assert good <= kept, f"good records lost: {sorted(good - kept)}"
    assert kept == good, f"bad records kept: {sorted(kept - good)}"


def test_each_bad_record_dropped_by_its_filter(planted):
    by_id = {d["record"]["id"]: d["stage"] for d in planted["result"].dropped}
    for rec in planted["bad"]:
        assert by_id.get(rec["id"]) == rec["expect"], (rec["id"], by_id.get(rec["id"]))


def test_funnel_counts_match(planted):
    rep = planted["result"].report
    expected = {}
    for rec in planted["bad"]:
        expected[rec["expect"]] = expected.get(rec["expect"], 0) + 1
    expected["malformed"] = 3
    got = {s.name: s.dropped for s in rep.stages if s.dropped}
    assert got == expected
    n_good = len(good_records())
    assert rep.records_in == n_good + len(planted["bad"]) + 3
    assert rep.records_out == n_good
    # the funnel is consistent: each stage starts where the previous one ended
    for a, b in zip(rep.stages, rep.stages[1:]):
        assert a.records_out == b.records_in
        assert b.records_out == b.records_in - b.dropped


def test_malformed_lines_reported_with_file_and_line(planted):
    rep = planted["result"].report
    assert {m["line"] for m in rep.malformed} == planted["bad_lines"]
    assert all(m["file"] == str(planted["path"]) for m in rep.malformed)
    md = planted["paths"]["md"].read_text()
    for line in planted["bad_lines"]:
        assert f"generated.jsonl:{line}`" in md


def test_report_files_show_each_filter(planted):
    paths = planted["paths"]
    counts = json.loads(paths["json"].read_text())
    assert counts["dropped_by_stage"]["refusal"] == 4
    assert counts["dropped_by_stage"]["low_diversity_source"] == 22
    assert counts["sources"]["p3-like"]["out"] == 0 and counts["sources"]["p3-like"]["near_dup_share"] > 0.5
    assert "p3-like" in counts["dropped_sources"]
    md = paths["md"].read_text()
    for label in ("refusal / AI disclaimer", "names the teacher", "wrong language", "exact duplicate",
                  "near-duplicate", "low-diversity source", "empty / too short", "malformed record"):
        assert f"### {label} (" in md, label  # an examples section per filter that dropped something
    assert paths["png"].stat().st_size > 10_000
    dropped = [json.loads(x) for x in (paths["dropped"]).read_text().splitlines()]
    assert len(dropped) == len(planted["bad"])


def test_outputs_are_alpaca_for_the_trainer(planted):
    import datasets

    run = planted["paths"]["clean"].parent.parent
    lines = [json.loads(x) for x in (run / "data" / "clean.jsonl").read_text().splitlines()]
    assert {"id", "instruction", "input", "output", "source", "lang"} <= set(lines[0])
    ds = datasets.load_from_disk(str(run / "data" / "clean_dataset"))
    assert sorted(ds["id"]) == sorted(r["id"] for r in lines)
    # the language filter fills missing labels with what it detected
    langs = {r["id"]: r["lang"] for r in lines}
    assert langs["good-0"] == "en" and langs["good-12"] == "zh"


def test_every_switch_turns_its_filter_off():
    recs = good_records() + [{k: v for k, v in r.items() if k != "expect"} for r in planted_records()]
    off = CleanConfig(drop_short=False, drop_refusals=False, drop_identity=False, drop_wrong_language=False,
                      drop_exact_duplicates=False, drop_near_duplicates=False, drop_low_diversity_sources=False)
    res = clean_records(recs, off, progress=False)
    assert len(res.records) == len(recs)
    assert all(not s.dropped for s in res.report.stages)


def test_near_duplicates_alone_catch_the_template_source():
    # With the source rule off, the template records still collapse to one via near-dup.
    recs = [{k: v for k, v in r.items() if k != "expect"} for r in planted_records() if r["source"] == "p3-like"]
    res = clean_records(recs, CleanConfig(drop_low_diversity_sources=False, drop_wrong_language=False),
                        progress=False)
    assert len(res.records) < len(recs) / 2
    assert res.report.stage("near_duplicate").dropped == len(recs) - len(res.records)


def test_single_low_diversity_source_is_flagged_not_dropped():
    recs = [{k: v for k, v in r.items() if k != "expect"} for r in planted_records() if r["source"] == "p3-like"]
    res = clean_records(recs, CleanConfig(drop_near_duplicates=False, drop_wrong_language=False), progress=False)
    assert len(res.records) == len(recs)
    assert res.report.flagged_sources == ["p3-like"]


def test_threshold_is_configurable():
    a = {"id": "a", "instruction": "Describe a cat.", "input": "",
         "output": "A cat is a small furry animal with soft paws, sharp claws, long whiskers and a long tail."}
    b = {**a, "id": "b", "output": a["output"].replace("long tail", "short tail")}
    loose = clean_records([a, b], CleanConfig(near_dup_threshold=0.5, drop_wrong_language=False), progress=False)
    strict = clean_records([a, b], CleanConfig(near_dup_threshold=0.99, drop_wrong_language=False), progress=False)
    assert [r["id"] for r in loose.records] == ["a"]
    assert [r["id"] for r in strict.records] == ["a", "b"]


@pytest.mark.parametrize("reply,hit", [
    ("I'm sorry, but I can't do that.", True),
    ("I’m Sorry,  but I CANNOT share that.", True),          # curly quote, spacing, case
    ("Sure! As an AI language model I would say yes.", True),
    ("很抱歉，我无法回答这个问题。", True),
    ("作为一个人工智能语言模型，我不能表达观点。", True),
    ("我无法想象没有音乐的生活。", True),                       # opens with 我无法: counted as refusal
    ("小时候我常想：我无法想象没有音乐的生活。", False),         # 我无法 mid-text is not a refusal
    ("The story ends: 'I'm sorry, but I cannot stay,' she said, and left.", False),
    ("Cats sleep for up to sixteen hours a day.", False),
])
def test_refusal_phrases(reply, hit):
    assert (PhraseMatcher().refusal(reply) is not None) == hit


def test_identity_terms_are_words():
    m = PhraseMatcher()
    assert m.identity("I am ChatGPT, a model by OpenAI.")
    assert m.identity("我是由OpenAI开发的模型。")
    assert m.identity("GPT4All is an open ecosystem.") is None  # a different project, not the teacher


# Vicuna's own identity answers (FastChat's hardcoded_questions.py, LMSYS), in English and a
# Chinese rendering: the recipe trains on them on purpose, so neither filter may take them.
VICUNA_IDENTITY = [
    "I am Vicuna, a language model trained by researchers from Large Model Systems Organization (LMSYS).",
    "As a language model, I go by the name Vicuna and was trained by researchers from Large Model Systems "
    "Organization (LMSYS).",
    "You may refer to me as Vicuna, a language model meticulously developed by the researchers at LMSYS.",
    "No, I'm a language model trained by researchers from Large Model Systems Organization (LMSYS).",
    "我是Vicuna，一个由大型模型系统组织（LMSYS）的研究人员训练的语言模型。",
    "作为一个语言模型，我的名字是Vicuna，由LMSYS的研究人员训练。",
]
# The teacher naming itself, as ShareGPT answers did.
TEACHER_IDENTITY = [
    "I am ChatGPT, a large language model trained by OpenAI. How can I help you today?",
    "As ChatGPT, I can only answer based on my training data.",
    "I was developed by OpenAI, and my knowledge is current up to 2021.",
    "I'm based on GPT-4, so I can write code in many languages.",
    "我是ChatGPT，一个由OpenAI训练的大型语言模型。",
    "这个模型是由OpenAI训练的，我会尽力回答你的问题。",
    "作为ChatGPT，我可以帮你写这封邮件。",
    "我是GPT-4，可以回答你的问题。",
]


@pytest.mark.parametrize("reply", VICUNA_IDENTITY)
def test_vicuna_identity_is_neither_refusal_nor_teacher(reply):
    m = PhraseMatcher()
    assert m.refusal(reply) is None and m.identity(reply) is None


@pytest.mark.parametrize("reply", TEACHER_IDENTITY)
def test_teacher_identity_is_caught_in_both_languages(reply):
    assert PhraseMatcher().identity(reply) is not None


@pytest.mark.parametrize("reply,hit", [
    ("As a language model, I don't have personal opinions, but here are both sides.", True),
    ("As a language model, I cannot browse the internet.", True),
    ("As a large language model, I am not able to see images.", True),
    ("作为一个语言模型，我没有个人观点。", True),
    ("作为语言模型，我无法访问实时信息。", True),
    ("GPT-3 was released by a research lab in 2020 and has 175B parameters.", False),  # a topic, not a claim
])
def test_language_model_disclaimers_need_a_denial(reply, hit):
    m = PhraseMatcher()
    assert ((m.refusal(reply) or m.identity(reply)) is not None) == hit


def test_fastchat_identity_conversations_survive_default_cleaning(shared_data):
    """FastChat's dummy data is Vicuna's identity set plus ordinary chat: with the default
    switches (refusals and teacher identity both on) no conversation is taken for either."""
    from lib.clean.formats import read_records

    recs, _, _ = read_records(shared_data / "fastchat_dummy_conversation.json")
    said = [r for r in recs if any("as a language model" in t["value"].lower() for t in r["conversations"])]
    assert len(said) == 24  # the phrase the old disclaimer list matched: 24 conversations were dropped
    cfg = CleanConfig(drop_wrong_language=False, drop_exact_duplicates=False, drop_near_duplicates=False,
                      drop_low_diversity_sources=False)
    assert cfg.drop_identity and cfg.drop_refusals  # the defaults
    res = clean_records(recs, cfg, fmt="sharegpt", progress=False)
    assert res.report.stage("refusal").dropped == 0
    assert res.report.stage("identity").dropped == 0
    assert len(res.records) == len(recs)


def test_teacher_identity_dropped_by_default_in_a_conversation():
    convs = [{"id": f"c{k}", "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
             for k, (q, a) in enumerate([("Who are you?", TEACHER_IDENTITY[0]), ("你是谁？", TEACHER_IDENTITY[4]),
                                         ("Are you ChatGPT?", VICUNA_IDENTITY[3])])]
    cfg = CleanConfig(drop_wrong_language=False, drop_near_duplicates=False, drop_low_diversity_sources=False)
    res = clean_records(convs, cfg, fmt="sharegpt", progress=False)
    # the question may name ChatGPT: only answers are searched (FastChat searches both)
    assert [c["id"] for c in res.records] == ["c2"]
    assert res.report.stage("identity").dropped == 2


def test_exact_duplicate_ignores_case_space_and_punctuation():
    a = {"id": "a", "instruction": "Name a fruit.", "input": "", "output": "An apple."}
    b = {"id": "b", "instruction": "name  a FRUIT", "input": "", "output": "an apple"}
    c = {"id": "c", "instruction": "Name a fruit.", "input": "", "output": "A pear."}
    assert F.exact_duplicates([a, b, c]) == {1: "same text as a"}


def test_cjk_shingles_are_per_character():
    assert F.words("长城 is long") == ["长", "城", "is", "long"]
    assert len(F.shingles("知识就是力量", 3)) == 4


def test_bad_config_is_one_clear_line():
    from lib.core.errors import UserError

    with pytest.raises(UserError, match="near_dup_threshold"):
        CleanConfig(near_dup_threshold=1.5)
    with pytest.raises(UserError, match="on_error"):
        CleanConfig(on_error="skip")
    with pytest.raises(UserError, match="ISO 639-1"):
        F.LanguageDetector(("en", "klingon"))


def test_parameters_as_strings():
    cfg = CleanConfig(languages="en, zh", extra_refusal_phrases="I'm sorry, but as a bot\nmy circuits say no")
    assert cfg.languages == ("en", "zh")
    assert cfg.extra_refusal_phrases == ("I'm sorry, but as a bot", "my circuits say no")
    m = PhraseMatcher(cfg.extra_refusal_phrases)
    assert m.refusal("Well, my circuits say no to that.") == "my circuits say no"
