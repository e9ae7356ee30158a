"""The fault proxy itself: each fault reaches the official `openai` client as the real API's would.

Run: .venv/bin/pytest tests/test_hardening_faultproxy.py -q
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import openai
import pytest

from lib.core.client import Endpoint, check_endpoint
from lib.core.errors import UserError
from lib.testing.faultproxy import FAULTS, FaultProxy, FaultRates

HELLO = [{"role": "user", "content": "Say hello."}]


def _client(proxy, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key="local-test", **{"max_retries": 0, **kw})


@pytest.mark.parametrize("fault, exc", [
    ("rate_limit", openai.RateLimitError),
    ("server_error", openai.InternalServerError),
    ("drop", openai.APIConnectionError),
    ("unauthorized", openai.AuthenticationError),
])
def test_each_failing_fault_is_the_matching_openai_exception(local_server, fault, exc):
    with FaultProxy(local_server.base_url, script=[fault]) as proxy:
        with pytest.raises(exc):
            _client(proxy).chat.completions.create(model=local_server.model, messages=HELLO, max_tokens=4)
        assert proxy.stats[fault] == 1 and proxy.stats.get("forwarded", 0) == 0


def test_rate_limit_carries_retry_after_and_the_sdk_retry_succeeds(local_server):
    with FaultProxy(local_server.base_url, script=["rate_limit", "rate_limit"], retry_after=0.05) as proxy:
        try:
            _client(proxy).chat.completions.create(model=local_server.model, messages=HELLO, max_tokens=2)
        except openai.RateLimitError as e:
            assert e.response.headers["retry-after"] == "0.05"
            assert e.response.json()["error"]["code"] == "rate_limit_exceeded"
        resp = _client(proxy, max_retries=2).chat.completions.create(
            model=local_server.model, messages=HELLO, max_tokens=2)
        assert resp.usage.completion_tokens > 0
        assert [e[3] for e in proxy.events] == ["rate_limit", "rate_limit", "ok"]


def test_malformed_body_is_not_a_completion(local_server):
    with FaultProxy(local_server.base_url, script=["malformed"]) as proxy:
        # openai 3.x surfaces a cut JSON body as a decode error, not as an openai.APIError: retry
        # loops that only catch APIError crash on it (see docs/reliability.md).
        with pytest.raises((json.JSONDecodeError, openai.APIResponseValidationError)):
            _client(proxy).chat.completions.create(model=local_server.model, messages=HELLO, max_tokens=4)
        assert proxy.stats["malformed"] == 1


def test_truncated_reply_says_length_and_bills_its_real_usage(local_server):
    with FaultProxy(local_server.base_url, script=["truncate", "ok"], truncate_tokens=2) as proxy:
        client = _client(proxy)
        cut = client.chat.completions.create(model=local_server.model, messages=HELLO, max_tokens=12)
        whole = client.chat.completions.create(model=local_server.model, messages=HELLO, max_tokens=12)
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage.completion_tokens == 2 < whole.usage.completion_tokens
    assert cut.usage.prompt_tokens == whole.usage.prompt_tokens
    assert len(cut.choices[0].message.content) < len(whole.choices[0].message.content)
    assert proxy.stats["forwarded"] == 2


def test_slow_reply_times_out_a_short_client_and_reaches_a_patient_one(local_server):
    with FaultProxy(local_server.base_url, script=["slow", "slow"], slow_s=1.5) as proxy:
        with pytest.raises(openai.APITimeoutError):
            _client(proxy, timeout=0.3).chat.completions.create(model=local_server.model, messages=HELLO, max_tokens=2)
        ok = _client(proxy, timeout=60).chat.completions.create(model=local_server.model, messages=HELLO, max_tokens=2)
        assert ok.choices[0].message.content
        assert proxy.stats["slow"] == 2


def test_only_generating_calls_get_faults(local_server):
    # Health checks and /v1/models probes must stay honest under faults: only calls that
    # generate (and cost money) get them.
    with FaultProxy(local_server.base_url, rates=FaultRates(server_error=1.0)) as proxy:
        root = proxy.base_url[: -len("/v1")]
        with urllib.request.urlopen(f"{root}/v1/models", timeout=10) as r:  # llama.cpp's health probe
            assert r.status == 200 and json.loads(r.read())["data"][0]["id"] == local_server.model
        with pytest.raises(openai.InternalServerError):
            _client(proxy).chat.completions.create(model=local_server.model, messages=HELLO, max_tokens=2)
        assert proxy.stats == {"requests": 2, "ok": 1, "forwarded": 1, "faultable": 1, "server_error": 1}


def test_wrong_key_is_refused_with_one_line():
    with FaultProxy(None, require_key="sk-the-right-one") as proxy:
        ep = Endpoint(base_url=proxy.base_url, model="m", api_key_env="SHEAR_FAULTPROXY_KEY")
        import os
        os.environ["SHEAR_FAULTPROXY_KEY"] = "sk-a-wrong-one"
        try:
            with pytest.raises(UserError, match="refused the key in SHEAR_FAULTPROXY_KEY"):
                check_endpoint(ep)
        finally:
            del os.environ["SHEAR_FAULTPROXY_KEY"]
        assert proxy.stats["unauthorized"] == 1


def _hammer(proxy, n: int, threads: int) -> None:
    """n faultable POSTs from `threads` threads; no upstream, so only the fault decides the reply."""
    def one():
        req = urllib.request.Request(f"{proxy.base_url}/chat/completions", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10).read()
        except (urllib.error.URLError, ConnectionError, OSError):
            pass

    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    ts = [threading.Thread(target=lambda k=k: [one() for _ in range(k)]) for k in per]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def test_counts_are_exact_under_a_seed_whatever_the_concurrency():
    rates = FaultRates(rate_limit=0.3, server_error=0.2, drop=0.1, malformed=0.1, unauthorized=0.1)
    runs = []
    for threads in (1, 4):
        with FaultProxy(None, rates=rates, seed=7) as proxy:
            _hammer(proxy, 200, threads)
            runs.append(proxy.stats)
    assert runs[0] == runs[1]
    assert runs[0]["requests"] == 200 and sum(runs[0].get(f, 0) for f in FAULTS + ("ok",)) == 200
    # the draws follow the rates (binomial, n=200: well inside 5 sigma)
    assert 35 <= runs[0]["rate_limit"] <= 85 and 10 <= runs[0]["drop"] <= 35
    with FaultProxy(None, rates=rates, seed=8) as other:
        _hammer(other, 200, 1)
        assert other.stats != runs[0]


def test_bad_rates_and_scripts_are_refused():
    with pytest.raises(ValueError, match="add up to more than 1"):
        FaultRates(rate_limit=0.7, drop=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FaultRates(slow=-0.1)
    with pytest.raises(ValueError, match="unknown fault"):
        FaultProxy(None, script=["explode"])
