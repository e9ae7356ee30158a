"""The ledger: idempotent ids, torn lines, many writers, API pricing, heartbeats across a kill."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import pytest
from openai.types import CompletionUsage

from lib.budget import Ledger, api_cost, load_budgets
from lib.core.client import Endpoint
from lib.core.errors import UserError
from lib.core.paths import BUDGETS_YAML, REPO

REMOTE = Endpoint(base_url="https://api.openai.com/v1", model="gpt-4o-mini")
LOCAL = Endpoint(base_url="http://127.0.0.1:9/v1", model="/some/local/model")


@pytest.fixture
def budgets():
    return load_budgets(BUDGETS_YAML)


def test_same_record_id_counts_once_across_writers_and_reopen(tmp_path, budgets):
    a = Ledger(tmp_path, writer="a", budgets=budgets)
    usage = {"prompt_tokens": 1000, "completion_tokens": 500}
    rec = a.record_api("data", REMOTE, usage, request_id="chatcmpl-1")
    a.record_api("data", REMOTE, usage, request_id="chatcmpl-1")  # a retry re-records the same response
    Ledger(tmp_path, writer="b").record_api("data", REMOTE, usage, record_id=rec["id"])
    expected, _ = api_cost("gpt-4o-mini", 1000, 500)
    assert expected > 0
    for reader in (a, Ledger(tmp_path, writer="reader")):
        assert reader.spent("data") == pytest.approx(expected)
        assert len(reader.records(kind="api")) == 1
    # two lines on disk in a.jsonl, one in b.jsonl: the dedup is on read, the files stay append-only
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 2


def test_api_record_prices_remote_and_zeroes_local_with_reference(tmp_path, budgets):
    ledger = Ledger(tmp_path, writer="gen", budgets=budgets)
    usage = CompletionUsage(prompt_tokens=2000, completion_tokens=300, total_tokens=2300,
                            prompt_tokens_details={"cached_tokens": 1000})
    remote = ledger.record_api("data", REMOTE, usage, request_id="r1", purpose="self-instruct")
    usd, source = api_cost("gpt-4o-mini", 2000, 300, cached_tokens=1000)
    assert remote["usd"] == pytest.approx(usd) and remote["cached_tokens"] == 1000
    assert remote["price_source"] == source and "genai-prices" in source
    # cached tokens are cheaper than fresh ones
    assert usd < api_cost("gpt-4o-mini", 2000, 300)[0]
    local = ledger.record_api("data", LOCAL, usage)
    assert local["usd"] == 0.0 and local["local"] is True
    assert local["usd_reference"] == pytest.approx(usd) and local["reference_model"] == "gpt-4o-mini"
    # batch pricing is half of the synchronous price for the same tokens
    batch = ledger.record_api("data", REMOTE, {"prompt_tokens": 2000, "completion_tokens": 300}, request_id="b1",
                              batch=True)
    assert batch["usd"] == pytest.approx(api_cost("gpt-4o-mini", 2000, 300)[0] * 0.5)
    assert "batch" in batch["price_source"]
    assert ledger.spent() == pytest.approx(usd + batch["usd"])


def test_budget_price_override_and_unknown_model(tmp_path):
    (tmp_path / "b.yaml").write_text(BUDGETS_YAML.read_text().replace(
        "prices: {}", "prices: {house-teacher: {input: 2.0, output: 8.0, cached_input: 1.0}}"))
    budgets = load_budgets(tmp_path / "b.yaml")
    ledger = Ledger(tmp_path / "ledger", writer="gen", budgets=budgets)
    ep = Endpoint(base_url="https://llm.example.com/v1", model="house-teacher")
    rec = ledger.record_api("data", ep, {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000,
                                         "prompt_tokens_details": {"cached_tokens": 500_000}}, request_id="h1")
    assert rec["usd"] == pytest.approx(0.5 * 2.0 + 0.5 * 1.0 + 8.0)
    assert rec["price_source"] == "budgets.yaml prices.house-teacher"
    unknown = Endpoint(base_url="https://llm.example.com/v1", model="nobody-knows-this-model-7")
    with pytest.raises(UserError) as e:
        ledger.record_api("data", unknown, {"prompt_tokens": 10, "completion_tokens": 10}, request_id="u1")
    assert "nobody-knows-this-model-7" in str(e.value) and "budgets.yaml" in str(e.value)
    # the tokens of the unpriced call are still on disk (paid work is never lost)
    assert any(r["id"] == "api:u1" and r["usd"] is None for r in ledger.records())


def test_torn_last_line_is_skipped_and_repaired(tmp_path, budgets):
    ledger = Ledger(tmp_path, writer="gen", budgets=budgets)
    first = ledger.record_api("data", REMOTE, {"prompt_tokens": 100, "completion_tokens": 10}, request_id="t1")
    with open(tmp_path / "gen.jsonl", "ab") as f:  # a kill in the middle of a write
        f.write(b'{"id":"api:t2","kind":"api","phase":"data","usd":99')
    reader = Ledger(tmp_path, writer="reader")
    assert reader.spent() == pytest.approx(first["usd"])
    assert reader.bad_lines == 0  # an unfinished line is not read at all (it may still be growing)
    resumed = Ledger(tmp_path, writer="gen", budgets=budgets)  # reopening cuts the torn line off
    second = resumed.record_api("data", REMOTE, {"prompt_tokens": 100, "completion_tokens": 10}, request_id="t3")
    fresh = Ledger(tmp_path, writer="reader2")
    assert fresh.spent() == pytest.approx(first["usd"] + second["usd"])
    assert fresh.bad_lines == 0
    lines = (tmp_path / "gen.jsonl").read_bytes().split(b"\n")
    assert [json.loads(x)["id"] for x in lines if x] == [first["id"], "api:t3"]


def _hammer(root: str, writer: str, n: int) -> None:
    ledger = Ledger(root, writer=writer)
    for i in range(n):
        ledger.record_compute("training", 0, 36, hourly_usd=1.0, record_id=f"{writer}-{os.getpid()}-{i}")


def test_concurrent_processes_sharing_and_not_sharing_a_writer_lose_nothing(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), w, 60)) for w in ("shared", "shared", "own")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ledger = Ledger(tmp_path, writer="reader")
    assert len(ledger.records()) == 180
    assert ledger.bad_lines == 0
    assert ledger.spent("training") == pytest.approx(180 * 0.01)


def test_threads_in_one_process(tmp_path):
    import threading

    ledger = Ledger(tmp_path, writer="w")
    threads = [threading.Thread(target=lambda k=k: [ledger.record_compute("data", 0, 3.6, hourly_usd=1.0,
                                                                           record_id=f"{k}-{i}") for i in range(25)])
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(Ledger(tmp_path, writer="r").records()) == 100


def test_compute_interval_price_nodes_and_task_id(tmp_path, monkeypatch):
    monkeypatch.setenv("SKYPILOT_TASK_ID", "sky-managed-2026_11_21-1_train-7b")
    ledger = Ledger(tmp_path, writer="node0")
    rec = ledger.record_compute("training", 1000.0, 1000.0 + 1800, accelerator="A100-80GB", count=8, nodes=2,
                                hourly_usd=8.65, cloud="aws", region="us-east-1", instance="p4de.24xlarge", spot=True)
    assert rec["usd"] == pytest.approx(0.5 * 8.65 * 2)
    assert rec["task_id"] == "sky-managed-2026_11_21-1_train-7b"
    with pytest.raises(UserError, match="ends before it starts"):
        ledger.record_compute("training", 10, 5)
    with pytest.raises(UserError, match="unknown budget phase"):
        ledger.record_compute("trainig", 0, 5)


WORKER = r"""
import sys, time
sys.path.insert(0, {repo!r})
from lib.budget import Ledger
ledger = Ledger({root!r}, writer="train-node0")
with ledger.meter("training", heartbeat_s={hb}, accelerator="A100-80GB", count=8, hourly_usd=36.0, spot=True):
    print("started", flush=True)
    time.sleep({work})
print("finished", flush=True)
"""


def _run_worker(root, hb, work, env):
    return subprocess.Popen([sys.executable, "-c", WORKER.format(repo=str(REPO), root=str(root), hb=hb, work=work)],
                            stdout=subprocess.PIPE, text=True, env=env)


def test_preempted_writer_resumed_with_same_task_id(tmp_path):
    """SIGKILL mid-run (a spot preemption), resume under the same task id: each interval once,
    total within one heartbeat of the true time."""
    env = {**os.environ, "SKYPILOT_TASK_ID": "sky-managed-test-task-1"}
    hb = 0.4
    p = _run_worker(tmp_path, hb, 60, env)
    assert p.stdout.readline().strip() == "started"
    t_start = time.time()
    time.sleep(1.6)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    killed_true = time.time() - t_start
    ledger = Ledger(tmp_path, writer="reader")
    (killed,) = ledger.records(kind="compute")
    assert killed["open"] is True and killed["recovery"] == 0
    # lost at most one heartbeat (+ scheduling slack on a busy 2-core machine)
    assert -0.2 <= killed_true - killed["hours"] * 3600 <= hb + 1.0

    t1 = time.time()
    q = _run_worker(tmp_path, hb, 1.0, env)
    out, _ = q.communicate(timeout=60)
    resumed_true = time.time() - t1
    assert "finished" in out
    recs = Ledger(tmp_path, writer="reader2").records(kind="compute")
    assert len(recs) == 2  # every interval once, although each was written several times
    assert len({r["id"] for r in recs}) == 2
    assert all(r["task_id"] == "sky-managed-test-task-1" for r in recs)
    resumed = [r for r in recs if r["id"] != killed["id"]][0]
    assert resumed["open"] is False and resumed["recovery"] == 1
    lines = (tmp_path / "train-node0.jsonl").read_text().splitlines()
    assert len(lines) > 4  # heartbeats really re-wrote the open intervals
    total_s = sum(r["hours"] for r in recs) * 3600
    true_s = killed_true + resumed_true
    # short of the true time by at most one heartbeat (+ slack), never meaningfully longer
    assert true_s - hb - 1.5 <= total_s <= true_s + 0.2
    assert Ledger(tmp_path, writer="r3").spent("training") == pytest.approx(total_s / 3600 * 36.0, rel=1e-6)


@pytest.mark.timeout(300)
def test_real_local_server_call_is_recorded(local_endpoint, tmp_path, budgets):
    from lib.core.client import chat, make_client

    ledger = Ledger(tmp_path, writer="gen", budgets=budgets)
    text, resp = chat(make_client(local_endpoint), local_endpoint, [{"role": "user", "content": "Say hi."}],
                      ledger=ledger, phase="data", purpose="smoke", max_tokens=8)
    (rec,) = ledger.records()
    assert rec["usd"] == 0.0 and rec["local"] is True
    assert rec["prompt_tokens"] == resp.usage.prompt_tokens > 0
    assert rec["completion_tokens"] == resp.usage.completion_tokens > 0
    assert rec["usd_reference"] == pytest.approx(api_cost("gpt-4o-mini", resp.usage.prompt_tokens,
                                                          resp.usage.completion_tokens)[0])
