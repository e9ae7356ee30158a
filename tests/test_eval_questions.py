"""Question sets: the project's own, and loaders for the public sets (copies in ../shared/data)."""
import functools
import http.server
import json
import threading

import pytest

from lib.core.errors import UserError
from lib.core.text import guess_lang
from lib.evaluate.questions import load_question_set, read_records, spread_over_categories


@pytest.mark.parametrize("name,lang", [("own_en", "en"), ("own_zh", "zh")])
def test_own_sets(name, lang):
    qs = load_question_set(name).questions
    assert 10 <= len(qs) <= 16
    assert len({q.question_id for q in qs}) == len(qs)
    assert all(q.lang == lang and 1 <= len(q.turns) <= 2 and all(t.strip() for t in q.turns) for q in qs)
    assert len({q.category for q in qs}) >= 6
    assert any(len(q.turns) == 2 for q in qs)
    # Every math/reasoning/coding question carries a reference for reference-guided grading.
    for q in qs:
        if q.category in ("math", "reasoning", "coding"):
            assert q.reference and len(q.reference) == len(q.turns)
    assert len(load_question_set("own").questions) == len(qs) * 2 or name == "own_zh"


def test_sample_is_spread_over_categories():
    qs = load_question_set("own_en", max_questions=5).questions
    assert len(qs) == 5 and len({q.category for q in qs}) == 5
    all_q = load_question_set("own_en").questions
    assert spread_over_categories(all_q, 100) == all_q


def test_vicuna_and_mtbench(shared_data):
    v = load_question_set(f"vicuna:{shared_data}/vicuna_bench_questions.jsonl|{shared_data}/vicuna_bench_reference_gpt4.jsonl")
    assert len(v.questions) == 80 and len({q.category for q in v.questions}) == 9
    assert sum(1 for q in v.questions if q.reference) >= 10
    mt = load_question_set(f"mtbench:{shared_data}/mtbench_questions.jsonl|{shared_data}/mtbench_reference_gpt4.jsonl")
    assert len(mt.questions) == 80 and all(len(q.turns) == 2 for q in mt.questions)
    by_id = mt.by_id()
    assert by_id["101"].category == "reasoning" and len(by_id["101"].reference) == 2
    assert by_id["111"].category == "math" and by_id["111"].reference


def test_selfinstruct_with_text_davinci_003(shared_data):
    qs = load_question_set(f"selfinstruct:{shared_data}/selfinstruct_user_oriented_instructions.jsonl|"
                           f"{shared_data}/selfinstruct_text-davinci-003_predictions.jsonl")
    assert len(qs.questions) == 252
    davinci = qs.premade["text-davinci-003"]
    assert len(davinci) == 252
    q0 = qs.by_id()["user_oriented_task_0"]
    assert q0.turns[0].startswith("The sentence you are given might be too wordy")
    assert "If you have any questions about my rate" in q0.turns[0]  # the input is part of the turn
    assert davinci["user_oriented_task_0"][0].startswith("Have questions about my rate?")


def test_alpacaeval_from_url(tmp_path):
    """AlpacaEval's JSON (a list) served over real HTTP: outputs become the generator's premade answers."""
    data = [{"instruction": "Name a primary colour.", "output": "Red.", "generator": "gpt4_turbo", "dataset": "helpful_base"},
            {"instruction": "写一句问候语。", "output": "你好！", "generator": "gpt4_turbo", "dataset": "oasst"}]
    (tmp_path / "alpaca_eval.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        qs = load_question_set(f"alpacaeval:http://127.0.0.1:{httpd.server_address[1]}/alpaca_eval.json")
    finally:
        httpd.shutdown()
    assert [q.lang for q in qs.questions] == ["en", "zh"]
    assert qs.premade["gpt4_turbo"]["alpacaeval-1"] == ["你好！"]


@pytest.mark.parametrize("spec,fragment", [
    ("nope", "is not known"), ("vicuna:", "is not known"), ("vicuna:/does/not/exist.jsonl", "does not exist"),
    ("alpacaeval:http://127.0.0.1:1/x.json", "cannot download"),
])
def test_bad_specs_get_one_clear_line(spec, fragment):
    with pytest.raises(UserError, match=fragment) as e:
        load_question_set(spec)
    assert "\n" not in str(e.value)


def test_wrong_file_for_loader(tmp_path, shared_data):
    with pytest.raises(UserError, match="right file"):
        load_question_set(f"selfinstruct:{shared_data}/vicuna_bench_questions.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": 1}\nnot json\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2 is not valid JSON: fix or re-download"):
        read_records(str(bad))


def test_language_guess_on_real_seed_tasks(shared_data):
    """One language guess for every phase (lib.core.text.guess_lang). Chinese tasks often carry an
    English input or code; a CJK-share rule (>= 25%, generation's old one) called 4 of BELLE's
    seed tasks English. One task, a short Chinese instruction over 240 characters of code, stays
    English under both rules."""
    def texts(name):
        for line in open(shared_data / name, encoding="utf-8"):
            rec = json.loads(line)
            yield rec["instruction"] + "\n\n" + rec["instances"][0]["input"]

    assert {guess_lang(t) for t in texts("selfinstruct_seed_tasks.jsonl")} == {"en"}
    zh = [guess_lang(t) for t in texts("belle_zh_seed_tasks.jsonl")]
    assert len(zh) == 175 and zh.count("zh") == 174
    assert guess_lang("What does 你好 mean in English? It is a greeting.") == "en"
    assert guess_lang("把下面的英语句子翻译成中文。 She went to school on Monday but found no other students.") == "zh"


def test_alpaca_records_are_prompts_with_their_input(tmp_path, shared_data):
    """`alpaca:<clean.jsonl>`, 08_prefer's prompts on a cloud run: an Alpaca record's instruction and input
    are one user turn (as evaluation asks), its output the reference; the run's ids are kept."""
    real = [json.loads(ln) for ln in open(shared_data / "bench_instructions.jsonl", encoding="utf-8")][:40]
    recs = [{"id": f"r{i}", **r, "source": "gpteacher", "lang": "en"} for i, r in enumerate(real)]
    recs.append({"id": "zh1", "instruction": "给出下面词语的同义词", "input": "高兴", "output": "快乐", "source": "belle",
                 "lang": "zh"})
    path = tmp_path / "clean.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    qs = load_question_set(f"alpaca:{path}")
    assert [q.question_id for q in qs.questions] == [r["id"] for r in recs]
    with_input = next(r for r in recs if r["input"])
    q = qs.by_id()[with_input["id"]]
    assert q.turns == [f"{with_input['instruction'].strip()}\n\n{with_input['input'].strip()}"]
    assert q.reference == [with_input["output"]]
    assert qs.by_id()["zh1"].lang == "zh" and qs.by_id()["zh1"].turns == ["给出下面词语的同义词\n\n高兴"]
    cut = load_question_set(f"alpaca:{path}", max_questions=2)
    assert {q.category for q in cut.questions} == {"gpteacher", "belle"}  # a sample spread over the sources
    with pytest.raises(UserError, match="right file"):
        load_question_set(f"alpaca:{shared_data}/vicuna_bench_questions.jsonl")
