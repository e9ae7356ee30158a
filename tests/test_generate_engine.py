"""The generator against real servers: the embedded model, retries, the budget cap, the Batch API."""
from __future__ import annotations

import json
import time

import pytest
import yaml

from lib.budget import Ledger, load_budgets
from lib.core.client import Endpoint
from lib.generate import GenerateConfig, Generator, load_seed_tasks
from lib.core.text import prompt_token_bound
from lib.core.files import read_log
from lib.testing.batch_server import BatchServer

SEEDS = load_seed_tasks("", language="en")


def tiny_config(**kw) -> GenerateConfig:
    # greedy (temperature 0) so the embedded model's replies are reproducible
    base = dict(num_instructions_to_generate=50, max_requests=1, concurrency=1, tasks_per_request=3, max_tokens=96,
                temperature=0.0, backoff_base_s=0.05)
    base.update(kw)
    return GenerateConfig(**base)


def budgets_with_cap(tmp_path, cap: float):
    from lib.core.paths import BUDGETS_YAML

    src = yaml.safe_load(BUDGETS_YAML.read_text())
    src["phases"]["data"] = {"target": cap, "cap": cap, "warn": 1.0}
    path = tmp_path / "budgets.yaml"
    path.write_text(yaml.safe_dump(src))
    return load_budgets(path)


def replayed_ids(run_dir, endpoint, cfg) -> list[str]:
    """Records a fresh generator derives from the response log alone."""
    gen = Generator(run_dir, endpoint, SEEDS, cfg, show_progress=False)
    gen.recover()
    return [r["id"] for r in gen.records]


def test_generates_from_the_embedded_model(local_endpoint, tmp_path):
    budgets = load_budgets()
    ledger = Ledger(tmp_path / "ledger", writer="generate", budgets=budgets)
    cfg = tiny_config(max_requests=2)
    summary = Generator(tmp_path, local_endpoint, SEEDS, cfg, ledger=ledger, budgets=budgets, show_progress=False).run()
    responses = list(read_log(tmp_path / "data/generate/responses.jsonl"))
    assert [r["request_id"] for r in responses] == ["gen-0-000000", "gen-0-000001"]
    assert all(r["usage"]["completion_tokens"] > 0 and r["text"] for r in responses)
    records = list(read_log(tmp_path / "data/generated.jsonl"))
    for r in records:
        assert set(r) == {"id", "instruction", "input", "output", "source", "lang"} and r["instruction"] and r["output"]
    # everything the model produced is accounted for: kept + rejected-with-reason
    rejected = list(read_log(tmp_path / "data/generate/rejected.jsonl"))
    assert summary["kept"] == len(records) and sum(summary["rejected"].values()) == len(rejected)
    assert summary["requests"] == 2 and summary["usd"] == 0.0  # local teacher
    api = ledger.records(kind="api")
    assert sorted(r["id"] for r in api) == ["api:gen-0-000000", "api:gen-0-000001"]
    assert all(r["usd"] == 0.0 and r["usd_reference"] > 0 for r in api)
    # a second run resumes: nothing is requested again
    again = Generator(tmp_path, local_endpoint, SEEDS, cfg, ledger=ledger, budgets=budgets, show_progress=False).run()
    assert again["requests"] == 2 and len(list(read_log(tmp_path / "data/generate/responses.jsonl"))) == 2


def test_retries_honour_retry_after_and_count_reasons(local_endpoint, tmp_path):
    faults = [(429, 1), (500, None), (503, None)]
    with BatchServer(local_endpoint.base_url, faults=faults) as api:
        ep = Endpoint(base_url=api.base_url, model=local_endpoint.model)
        gen = Generator(tmp_path, ep, SEEDS, tiny_config(max_tokens=32), show_progress=False)
        t0 = time.monotonic()
        summary = gen.run()
        waited = time.monotonic() - t0
    assert summary["retries"] == {"429": 1, "5xx": 2}
    assert summary["requests"] == 1 and api.state.chat_calls == 4
    assert waited >= 1.0  # the 429 said "Retry-After: 1"


def test_budget_cap_is_never_crossed(local_endpoint, tmp_path):
    # The local server's calls are charged as gpt-4 ($30/$60 per 1M): a few cents buy a few calls.
    cap = 0.08
    budgets = budgets_with_cap(tmp_path, cap)
    ledger = Ledger(tmp_path / "ledger", writer="generate", budgets=budgets)
    ep = Endpoint(base_url=local_endpoint.base_url, model=local_endpoint.model, price_model="gpt-4")
    cfg = tiny_config(max_requests=0, max_tokens=24, tasks_per_request=2)
    gen = Generator(tmp_path, ep, SEEDS, cfg, ledger=ledger, budgets=budgets, show_progress=False)
    summary = gen.run()
    spent = ledger.spent("data")
    assert summary["stop_reason"].startswith("budget cap")
    assert 0 < spent <= cap
    assert summary["requests"] >= 1 and summary["usd"] == pytest.approx(spent)
    # it stopped because the next request's worst case would have crossed the cap
    nxt = gen.request(summary["requests"])
    assert spent + gen.worst_case_usd(nxt) > cap
    assert prompt_token_bound(nxt.messages) >= json.loads(
        (tmp_path / "data/generate/responses.jsonl").read_text().splitlines()[0])["usage"]["prompt_tokens"]


def test_batch_api_round_trip_with_the_real_client(local_endpoint, tmp_path):
    budgets = load_budgets()
    ledger = Ledger(tmp_path / "ledger", writer="generate", budgets=budgets)
    with BatchServer(local_endpoint.base_url) as api:
        ep = Endpoint(base_url=api.base_url, model=local_endpoint.model, price_model="gpt-4o-mini")
        cfg = tiny_config(max_requests=2, use_batch_api=True, batch_poll_s=0.2, max_tokens=48)
        summary = Generator(tmp_path, ep, SEEDS, cfg, ledger=ledger, budgets=budgets, show_progress=False).run()
        assert len(api.state.batches) == 1
        (batch,) = api.state.batches.values()
        assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 2
    assert summary["requests"] == 2
    assert not (tmp_path / "data/generate/batch.json").exists()  # round finished, state cleared
    api_recs = ledger.records(kind="api")
    assert len(api_recs) == 2 and all(r["batch"] for r in api_recs)
    from lib.budget import api_cost
    r = api_recs[0]
    full, _ = api_cost("gpt-4o-mini", r["prompt_tokens"], r["completion_tokens"])
    assert r["usd"] == pytest.approx(full / 2)  # Batch API: half price


def test_batch_resumes_from_the_saved_batch_id(local_endpoint, tmp_path):
    """Crash while the batch is pending: the next run polls the same batch, pays once."""
    import subprocess
    import sys

    from lib.core.paths import REPO

    with BatchServer(local_endpoint.base_url, hold_batches=True) as api:
        args = [sys.executable, "-m", "lib.generate", "--run-dir", str(tmp_path), "--teacher-base-url", api.base_url,
                "--teacher-model", local_endpoint.model, "--num-instructions-to-generate", "50", "--max-requests", "2", "--tasks-per-request", "3",
                "--max-tokens", "48", "--temperature", "0", "--use-batch-api", "--batch-poll-s", "0.2", "--no-progress"]
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        state_path = tmp_path / "data/generate/batch.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (state_path.exists() and json.loads(state_path.read_text()).get("batch_id")):
            time.sleep(0.2)
        proc.kill()  # SIGKILL while the batch is in progress
        proc.wait()
        batch_id = json.loads(state_path.read_text())["batch_id"]
        api.release_batches()
        done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert list(api.state.batches) == [batch_id]  # no second batch was created
    responses = list(read_log(tmp_path / "data/generate/responses.jsonl"))
    assert sorted(r["request_id"] for r in responses) == ["gen-0-000000", "gen-0-000001"]
    ledger = Ledger(tmp_path / "ledger", writer="generate")
    assert sorted(r["id"] for r in ledger.records(kind="api")) == ["api:gen-0-000000", "api:gen-0-000001"]


def test_listed_tasks_without_output_get_a_follow_up_answer(tmp_path):
    """Self-Instruct's second step. The reply must lack an output on purpose, so the teacher
    here is the protocol-level test server with a fixed reply (the real model's replies vary)."""
    reply = ("Name the largest planet in the solar system.\n4. Input: <noinput>\n###\n"
             "5. Instruction: Describe how rain forms in clouds.\n5. Output: Water vapour condenses into drops.")
    with BatchServer(None, canned_reply=reply) as api:
        ep = Endpoint(base_url=api.base_url, model="canned")
        cfg = GenerateConfig(num_instructions_to_generate=10, max_requests=1, concurrency=2, answer_missing_outputs=True)
        summary = Generator(tmp_path, ep, SEEDS, cfg, show_progress=False).run()
        off = Generator(tmp_path / "off", ep, SEEDS, GenerateConfig(num_instructions_to_generate=10, max_requests=1),
                        show_progress=False).run()
    records = {r["id"]: r for r in read_log(tmp_path / "data/generated.jsonl")}
    assert set(records) == {"gen-0-000000-0", "gen-0-000000-1"}
    assert records["gen-0-000000-0"]["output"] == reply  # the follow-up's reply (the server's fixed text)
    assert records["gen-0-000000-0"]["source"].endswith("+answer")
    ids = [r["request_id"] for r in read_log(tmp_path / "data/generate/responses.jsonl")]
    assert ids == ["gen-0-000000", "gen-0-000000-0-answer"]
    assert summary["answered"] == 1 and summary["pending_answers"] == 0
    assert off["kept"] == 1 and off["rejected"] == {"no_output": 1}  # Alpaca's behaviour when off


@pytest.mark.parametrize("batch", [False, True], ids=["online", "batch"])
def test_both_modes_meter_every_reply_once_and_resume_without_resending(tmp_path, batch):
    """The split engine end to end against the fast stand-in API (lib/testing/batch_server.py,
    real HTTP, real openai client): every logged reply is in the ledger once, priced at batch
    rates in batch mode, kept records match the log, and a second run sends nothing."""
    with BatchServer(upstream=None, latency_s=0.0) as api:
        ep = Endpoint(base_url=api.base_url, model="stand-in", price_model="gpt-4o-mini")
        budgets = load_budgets()
        ledger = Ledger(tmp_path / "ledger", writer="generate", budgets=budgets)
        cfg = tiny_config(num_instructions_to_generate=30, max_requests=6, concurrency=3, tasks_per_request=5,
                          max_tokens=256, use_batch_api=batch, batch_poll_s=0.05)
        summary = Generator(tmp_path, ep, SEEDS, cfg, ledger=ledger, budgets=budgets, show_progress=False).run()
        responses = list(read_log(tmp_path / "data/generate/responses.jsonl"))
        api_recs = ledger.records(kind="api")
        assert summary["requests"] == len(responses) == len(api_recs) == 6
        assert sorted(r["id"] for r in api_recs) == sorted(f"api:{r['request_id']}" for r in responses)
        assert all(r["batch"] is batch for r in api_recs) and summary["usd"] == pytest.approx(ledger.spent("data"))
        assert summary["kept"] == len(list(read_log(tmp_path / "data/generated.jsonl"))) > 0
        again = Generator(tmp_path, ep, SEEDS, cfg, ledger=ledger, budgets=budgets, show_progress=False).run()
        assert (again["requests"], again["kept"]) == (6, summary["kept"])
        assert len(ledger.records(kind="api")) == 6
    if batch:  # half price: the same tokens online would cost twice as much
        rec = api_recs[0]
        from lib.budget import api_cost

        full, _ = api_cost("gpt-4o-mini", rec["prompt_tokens"], rec["completion_tokens"])
        assert rec["usd"] == pytest.approx(full / 2)


def test_a_request_that_failed_inside_a_batch_is_sent_again(tmp_path):
    """lib.core.batchapi's error-file rule, as generation applies it: the failed line (in the
    batch's error file) is counted, never metered, and sent again in the next round."""
    with BatchServer(upstream=None) as api:
        ep = Endpoint(base_url=api.base_url, model="stand-in", price_model="gpt-4o-mini")
        budgets = load_budgets()
        ledger = Ledger(tmp_path / "ledger", writer="generate", budgets=budgets)
        cfg = tiny_config(num_instructions_to_generate=100, max_requests=2, tasks_per_request=5, max_tokens=256,
                          use_batch_api=True, batch_poll_s=0.05)
        api.inject((500, None))  # the first batch's first line fails
        summary = Generator(tmp_path, ep, SEEDS, cfg, ledger=ledger, budgets=budgets, show_progress=False).run()
        assert len(api.state.batches) == 2 and summary["retries"].get("batch_line_failed") == 1
    responses = list(read_log(tmp_path / "data/generate/responses.jsonl"))
    assert sorted(r["request_id"] for r in responses) == ["gen-0-000000", "gen-0-000001"]
    assert sorted(r["id"] for r in ledger.records(kind="api")) == ["api:gen-0-000000", "api:gen-0-000001"]
