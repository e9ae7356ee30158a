"""Judging against the real embedded judge on 127.0.0.1: both orders, retries, resume, costs,
single grading, and the Self-Instruct 252 with text-davinci-003 as the opponent."""
import json

import pytest

from lib.budget import Ledger, load_budgets
from lib.core.client import Endpoint
from lib.core.errors import UserError
from lib.evaluate.answers import GenerationSettings, answer_table, generate_answers, parse_models
from lib.evaluate.judge import Judge, JudgeSettings, judgments_store
from lib.evaluate.questions import QuestionSet, load_question_set
from lib.evaluate.results import pairs_for, summarize
from lib.core.files import atomic_write_json
from lib.core.server import free_port

ANSWERS = {
    "good": {"en-03": ["Sunlight scatters off air molecules; blue light scatters most, so the sky looks blue. "
                       "At sunset light crosses more air, the blue is scattered away, and reds remain."],
             "en-05": ["No. Maria > Tom > Aisha, so Aisha is shorter than Maria."]},
    "bad": {"en-03": ["Because of the ocean."], "en-05": ["Yes."]},
}


@pytest.fixture
def ledger(tmp_path):
    return Ledger(tmp_path / "ledger", writer="evaluate", budgets=load_budgets())


def _questions(*ids):
    return [q for q in load_question_set("own_en").questions if q.question_id in ids]


def test_pairwise_both_orders_metered_and_resumable(tmp_path, local_endpoint, ledger):
    qs = _questions("en-03", "en-05")
    path = tmp_path / "judgments.jsonl"
    # No format retries here (test_unparseable_replies... covers them): fewer calls, same code path.
    judge = Judge(local_endpoint, JudgeSettings(max_tokens=24, parse_retries=0), ledger=ledger)
    counts = judge.pairwise(qs, ANSWERS, [("good", "bad")], judgments_store(path))
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    assert sorted((r["question_id"], r["order"]) for r in recs) == [("en-03", "ab"), ("en-03", "ba"), ("en-05", "ab"), ("en-05", "ba")]
    for r in recs:
        assert (r["assistant_1"], r["assistant_2"]) == (("good", "bad") if r["order"] == "ab" else ("bad", "good"))
        assert r["status"] in ("ok", "unparsed") and r["judge"] == local_endpoint.model  # the GGUF, as served
        assert r["prompt_version"] and r["reply"] is not None
        if r["status"] == "ok":
            assert sorted([r["score_a"], r["score_b"]]) == sorted(r["scores"])
    assert counts["ok"] + counts["unparsed"] == 4 and counts["error"] == 0
    calls = ledger.records(kind="api", phase="evaluation")
    assert len(calls) == sum(r["attempts"] for r in recs) and all(c["purpose"] == "judge:pairwise" for c in calls)

    # Re-run: nothing is asked again, nothing is written twice.
    before = path.read_text()
    Judge(local_endpoint, JudgeSettings(max_tokens=24, parse_retries=0), ledger=ledger).pairwise(
        qs, ANSWERS, [("good", "bad")], judgments_store(path))
    assert path.read_text() == before and len(ledger.records(kind="api")) == len(calls)

    # A judgment lost from the file is re-done, and only that one.
    kept = [ln for ln in before.splitlines() if not ('"en-05"' in ln and '"ba"' in ln)]
    path.write_text("\n".join(kept) + "\n")
    Judge(local_endpoint, JudgeSettings(max_tokens=24, parse_retries=0), ledger=ledger).pairwise(
        qs, ANSWERS, [("good", "bad")], judgments_store(path))
    after = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(after) == 4 and sorted((r["question_id"], r["order"]) for r in after)[-1] == ("en-05", "ba")


def test_unparseable_replies_are_retried_then_reported(tmp_path, local_endpoint, ledger):
    """A one-token reply can never hold two scores: asked 1 + 2 times, then recorded as unparsed."""
    qs = _questions("en-05")
    store = judgments_store(tmp_path / "j.jsonl")
    counts = Judge(local_endpoint, JudgeSettings(max_tokens=1, parse_retries=2), ledger=ledger).pairwise(
        qs, ANSWERS, [("good", "bad")], store)
    assert counts == {"ok": 0, "unparsed": 2, "error": 0}
    for r in store.records():
        assert r["status"] == "unparsed" and r["attempts"] == 3 and len(r["earlier_replies"]) == 2
    assert len(ledger.records(kind="api")) == 6
    res = summarize(QuestionSet("t", qs), [], ANSWERS, store.records(),
                    pairs=[("good", "bad")], judge={"name": store.records()[0]["judge"]})
    pair = res["pairwise"]["pairs"][0]
    assert pair["unjudged"] == 1 and pair["judged"] == 0 and "unjudged" in res["headline"]


def test_dead_judge_records_errors_and_stops(tmp_path, ledger):
    ep = Endpoint(base_url=f"http://127.0.0.1:{free_port()}/v1", model="judge-x")
    store = judgments_store(tmp_path / "j.jsonl")
    judge = Judge(ep, JudgeSettings(max_tokens=8, max_consecutive_errors=2), ledger=ledger)
    judge.client = judge.client.with_options(max_retries=0, timeout=5)
    with pytest.raises(UserError, match="failed 2 calls in a row"):
        judge.pairwise(_questions("en-03"), ANSWERS, [("good", "bad")], store)
    recs = judgments_store(tmp_path / "j.jsonl").records()
    assert [r["status"] for r in recs] == ["error"]  # kept, and due again on the next run
    assert not judgments_store(tmp_path / "j.jsonl").done(("pairwise", "en-03", "good", "bad", "ab", None, "judge-x"))


def test_single_grading_two_turns_reference_guided(tmp_path, local_endpoint, ledger):
    qs = _questions("en-12")  # math, two turns, reference answers
    answers = {"m": {"en-12": ["15% of 240 is 36.", "Each gets 9."]}}
    store = judgments_store(tmp_path / "j.jsonl")
    counts = Judge(local_endpoint, JudgeSettings(max_tokens=32, parse_retries=1), ledger=ledger).single(
        qs, answers, ["m"], store)
    recs = store.records()
    assert sorted(r["turn"] for r in recs) == [1, 2] and all(r["reference_guided"] for r in recs)
    assert counts["ok"] + counts["unparsed"] == 2
    for r in recs:
        assert (r["status"] == "ok") == ("score" in r) and (r["status"] != "ok" or 0 <= r["score"] <= 10)


def _selfinstruct_run(tmp_path, shared_data, local_endpoint, ledger, n):
    qset = load_question_set(f"selfinstruct:{shared_data}/selfinstruct_user_oriented_instructions.jsonl|"
                             f"{shared_data}/selfinstruct_text-davinci-003_predictions.jsonl", max_questions=n)
    specs = parse_models({"smollm2": "embedded", "text-davinci-003": "premade"})
    store = generate_answers(specs, qset, tmp_path / "answers.jsonl", GenerationSettings(max_new_tokens=16), ledger=ledger)
    answers = answer_table(store)
    judge = Judge(local_endpoint, JudgeSettings(max_tokens=24, parse_retries=0), ledger=ledger)
    jstore = judgments_store(tmp_path / "judgments.jsonl")
    pairs = pairs_for("smollm2", [s.name for s in specs])
    judge.pairwise(qset.questions, answers, pairs, jstore)
    results = summarize(qset, specs, answers, jstore.records(), pairs=pairs,
                        judge={"name": judge.name, "local": True}, spent_usd=ledger.spent("evaluation"))
    atomic_write_json(tmp_path / "results.json", results)
    return qset, results


def test_selfinstruct_against_text_davinci_003(tmp_path, shared_data, local_endpoint, ledger):
    qset, results = _selfinstruct_run(tmp_path, shared_data, local_endpoint, ledger, n=2)
    pair = results["pairwise"]["pairs"][0]
    assert (pair["model_a"], pair["model_b"]) == ("smollm2", "text-davinci-003")
    assert pair["win"] + pair["tie"] + pair["loss"] + pair["unjudged"] == 2
    assert pair["mean_length"]["text-davinci-003"] > 0
    assert results["evaluation_usd"] == 0.0 and results["judge"]["served_models"]
    assert json.loads((tmp_path / "results.json").read_text())["question_set"] == "selfinstruct"
    assert len((tmp_path / "judgments.jsonl").read_text().splitlines()) == 4


@pytest.mark.full
def test_selfinstruct_against_text_davinci_003_larger_slice(tmp_path, shared_data, local_endpoint, ledger):
    qset, results = _selfinstruct_run(tmp_path, shared_data, local_endpoint, ledger, n=20)
    pair = results["pairwise"]["pairs"][0]
    assert pair["win"] + pair["tie"] + pair["loss"] + pair["unjudged"] == 20


def test_batch_judging_resumes_without_double_counting(tmp_path, local_server, ledger):
    """Judging through the Batch API (the project's test front end forwarding to the real judge)."""
    from lib.evaluate.batch import judge_batch
    from lib.testing.batch_server import BatchServer

    qs = _questions("en-05")
    path = tmp_path / "judgments.jsonl"
    state = tmp_path / "judge_batch.json"
    with BatchServer(upstream=local_server.base_url) as api:
        ep = Endpoint(base_url=api.base_url, model=local_server.model)
        judge = Judge(ep, JudgeSettings(max_tokens=24, parse_retries=0), ledger=ledger)
        jobs = judge.pairwise_jobs(qs, ANSWERS, [("good", "bad")], judgments_store(path))
        assert len(jobs) == 2
        counts = judge_batch(judge, jobs, judgments_store(path), state, poll_s=0.2)
        assert sum(counts.values()) == 2 and not state.exists()
        recs = [json.loads(x) for x in path.read_text().splitlines()]
        assert sorted(r["order"] for r in recs) == ["ab", "ba"]
        api_recs = ledger.records(kind="api", phase="evaluation")
        assert len(api_recs) == 2 and all(r["batch"] and r["id"].startswith("batch:") for r in api_recs)
        batch_id = api_recs[0]["id"].split(":")[1]
        # A crash after ingesting but before the state file was removed: the re-run polls the
        # same batch, writes nothing twice and meters nothing twice.
        state.write_text(json.dumps({"input_file_id": "x", "batch_id": batch_id}))
        store = judgments_store(path)
        judge_batch(judge, judge.pairwise_jobs(qs, ANSWERS, [("good", "bad")], store), store, state, poll_s=0.2)
        assert len(path.read_text().splitlines()) == 2 and len(ledger.records(kind="api")) == 2
        assert judge_batch(judge, [], judgments_store(path), state) == {}


def test_a_judgment_that_failed_inside_a_batch_is_asked_again(tmp_path, ledger):
    """lib.core.batchapi's error-file rule, as judging applies it: the failed line is an error
    judgment (not done, not metered); the next run asks only that one again."""
    from lib.evaluate.batch import judge_batch
    from lib.testing.batch_server import BatchServer

    qs = _questions("en-05")
    path, state = tmp_path / "judgments.jsonl", tmp_path / "judge_batch.json"
    with BatchServer(None, canned_reply="9 2\nAssistant 1 answers correctly.") as api:
        judge = Judge(Endpoint(base_url=api.base_url, model="canned"), JudgeSettings(max_tokens=24, parse_retries=0),
                      ledger=ledger)
        api.inject((500, None))
        store = judgments_store(path)
        counts = judge_batch(judge, judge.pairwise_jobs(qs, ANSWERS, [("good", "bad")], store), store, state, poll_s=0.05)
        assert counts == {"ok": 1, "unparsed": 0, "error": 1} and not state.exists()
        assert len(ledger.records(kind="api")) == 1
        store = judgments_store(path)
        jobs = judge.pairwise_jobs(qs, ANSWERS, [("good", "bad")], store)
        assert len(jobs) == 1  # only the failed judgment is due again
        assert judge_batch(judge, jobs, store, state, poll_s=0.05) == {"ok": 1, "unparsed": 0, "error": 0}
    assert len(ledger.records(kind="api")) == 2 and len(api.state.batches) == 2


def test_remote_judge_needs_key_and_price_before_any_call(monkeypatch, ledger):
    monkeypatch.delenv("SHEAR_TEST_JUDGE_KEY", raising=False)
    ep = Endpoint(base_url="https://judge.example.com/v1", model="gpt-4o-2024-08-06", api_key_env="SHEAR_TEST_JUDGE_KEY")
    with pytest.raises(UserError, match="export SHEAR_TEST_JUDGE_KEY"):
        Judge(ep, ledger=ledger)
    monkeypatch.setenv("SHEAR_TEST_JUDGE_KEY", "sk-dummy")
    judge = Judge(ep, ledger=ledger)
    assert judge.name == "gpt-4o-2024-08-06"
    with pytest.raises(UserError, match="no price known"):
        Judge(Endpoint(base_url="https://judge.example.com/v1", model="house-judge-v9",
                       api_key_env="SHEAR_TEST_JUDGE_KEY"), ledger=ledger)
    from lib.evaluate.judge import is_pinned

    assert is_pinned("gpt-4o-2024-08-06") and is_pinned("gpt-4-0613") and not is_pinned("gpt-4o")


def test_demonstration_for_small_judges(local_endpoint):
    from lib.evaluate.prompts import DEMO_REPLY

    qs = _questions("en-05")
    plain = Judge(local_endpoint, JudgeSettings()).pairwise_jobs(qs, ANSWERS, [("good", "bad")], judgments_store_tmp())
    demo = Judge(local_endpoint, JudgeSettings(demonstration=True)).pairwise_jobs(
        qs, ANSWERS, [("good", "bad")], judgments_store_tmp())
    assert [len(j.messages) for j in plain] == [2, 2] and [len(j.messages) for j in demo] == [4, 4]
    assert demo[0].messages[2] == {"role": "assistant", "content": DEMO_REPLY}
    assert demo[0].messages[3] == plain[0].messages[1]  # the real question comes last, unchanged
    assert demo[0].base["prompt_version"].endswith("+demo") and not plain[0].base["prompt_version"].endswith("+demo")


def judgments_store_tmp():
    import tempfile

    return judgments_store(tempfile.mkdtemp() + "/j.jsonl")


def test_chinese_and_emoji_judging_never_crosses_a_tiny_evaluation_cap(tmp_path, local_endpoint, evaluation_capped):
    """The reservation counts UTF-8 bytes (lib.core.text.prompt_token_bound): a character
    bound, which judging used before, is below the tokens a Chinese/emoji prompt really takes
    (checked against the server's own count), so it let a run spend past its cap."""
    from lib.core.text import prompt_token_bound
    from lib.core.errors import BudgetExceeded

    zh = "为什么冬天呼出的气会变成白雾？因为水蒸气遇冷凝结成小水滴。🌫️❄️😀🎉" * 12
    answers = {"a": {q: [zh] for q in ("zh-03", "zh-05")}, "b": {q: ["不知道。🤷" * 40] for q in ("zh-03", "zh-05")}}
    qs = [q for q in load_question_set("own_zh").questions if q.question_id in ("zh-03", "zh-05")]
    # a local server charged as gpt-4o: the one billing rule (Endpoint.billed_as) bills it
    ep = Endpoint(base_url=local_endpoint.base_url, model=local_endpoint.model, price_model="gpt-4o")
    settings = JudgeSettings(max_tokens=8, parse_retries=0)
    probe = Judge(ep, settings)
    jobs = probe.pairwise_jobs(qs, answers, [("a", "b")], judgments_store(tmp_path / "probe.jsonl"))
    worst = max(probe.worst_case_usd([j.messages]) for j in jobs)
    cap = 1.2 * worst  # room for one call and not much more
    ledger, guard = evaluation_capped(cap)
    judge = Judge(ep, settings, ledger=ledger, guard=guard)
    store = judgments_store(tmp_path / "judgments.jsonl")
    with pytest.raises(BudgetExceeded):
        judge.pairwise(qs, answers, [("a", "b")], store)
    calls = ledger.records(kind="api", phase="evaluation")
    assert calls, "no judge call fitted under the cap: the test exercised nothing"
    assert ledger.spent("evaluation") <= cap
    assert all(c["usd"] > 0 for c in calls)  # billed, as the price_model says
    by_q = {j.base["question_id"] + j.base["order"]: j.messages for j in jobs}
    for rec in store.records():
        messages = by_q[rec["question_id"] + rec["order"]]
        served = rec["prompt_tokens"]
        assert served <= prompt_token_bound(messages)
        # the old bound (characters + 16 per message) is below what the server counted
        assert sum(len(m["content"]) + 16 for m in messages) < served


def test_a_local_checkpoint_judge_is_named_by_its_fingerprint(embedded_model):
    """A judge served from a checkpoint directory (`transformers serve`, a trained run) gets a
    pinned name, the directory's and its weights' fingerprint; the shared server's judge above is
    llama.cpp on a GGUF file, named by the file."""
    from lib.evaluate.judge import is_pinned, judge_name

    name = judge_name(Endpoint(base_url="http://127.0.0.1:8000/v1", model=str(embedded_model)))
    assert name.startswith("smollm2-135m-instruct@") and is_pinned(name)
