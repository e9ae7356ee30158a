"""The local OpenAI-compatible server: real process, real protocol, no orphans."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import openai
import psutil
import pytest

from lib.core.client import Endpoint, chat, make_client
from lib.core.errors import UserError
from lib.core.server import LocalServer, embedded_server


def test_chat_completion_with_usage(local_endpoint):
    client = make_client(local_endpoint)
    text, resp = chat(client, local_endpoint, [{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert isinstance(text, str) and text.strip()
    # llama.cpp's server (llama_cpp/llama.py, _create_completion) skips its max_tokens check while
    # the text ends inside a multi-byte UTF-8 character, so an answer that reaches the cap in the
    # middle of an emoji ("Hello! 👋" is one) gets up to 3 more tokens; the usage counts them, and
    # the ledger bills what the usage says. OpenAI's API stops at max_tokens exactly.
    assert resp.usage.prompt_tokens > 0 and 0 < resp.usage.completion_tokens <= 8 + 3
    if resp.usage.completion_tokens > 8:
        assert resp.choices[0].finish_reason == "length" and not text.isascii()


def test_stop_kills_the_whole_process_group(embedded_model, tmp_path):
    srv = LocalServer(embedded_model, log_path=tmp_path / "s.log").start()
    pid = srv.proc.pid
    assert srv.healthy()
    srv.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not srv.healthy()


def test_server_dies_with_a_killed_parent(embedded_model, tmp_path):
    """A notebook kernel killed with SIGKILL must not leave the server running, even while
    the server is busy generating a long answer for it (uvicorn would wait for that)."""
    pidfile = tmp_path / "pid"
    code = textwrap.dedent(f"""
        import sys, threading, time; sys.path.insert(0, {str(embedded_model.parent.parent.parent.parent)!r})
        import openai
        from lib.core.server import LocalServer
        s = LocalServer({str(embedded_model)!r}).start()
        c = openai.OpenAI(base_url=s.base_url, api_key="x")
        ask = lambda: c.chat.completions.create(model=s.model, max_tokens=2000,
            messages=[{{"role": "user", "content": "Write a very long story."}}])
        threading.Thread(target=ask, daemon=True).start()
        time.sleep(3)
        open({str(pidfile)!r}, "w").write(str(s.proc.pid))
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 240
    while not pidfile.exists() and time.time() < deadline:
        time.sleep(0.5)
    assert pidfile.exists(), "server did not start"
    child = int(pidfile.read_text())
    assert psutil.pid_exists(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 30
    while time.time() < deadline:
        if not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.5)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("server outlived its parent")


def test_a_server_that_cannot_start_is_one_clear_error(tmp_path):
    srv = LocalServer(tmp_path, command=[sys.executable, "-c", "import sys; sys.exit(3)"], startup_timeout=20)
    with pytest.raises(UserError, match="exited with code 3"):
        srv.start()


def test_unreachable_endpoint_is_a_connection_error_not_a_hang():
    ep = Endpoint(base_url="http://127.0.0.1:9/v1", model="x")
    with pytest.raises(openai.APIConnectionError):
        make_client(ep, timeout=3, max_retries=0).chat.completions.create(
            model="x", messages=[{"role": "user", "content": "hi"}])


def test_the_model_list_names_the_served_model(local_server, local_endpoint):
    """GET /v1/models on `transformers serve` scanned the Hugging Face hub cache: with none on
    disk (every model here is a local directory) it answered HTTP 500, and with one it listed
    hub models, never the served directory. lib.core.server_main lists the model clients ask for."""
    listed = make_client(local_endpoint).models.list().data
    assert [m.id for m in listed] == [local_server.model]
    # ...and a client can call the model by the listed name
    text, _ = chat(make_client(local_endpoint), Endpoint(local_endpoint.base_url, listed[0].id),
                   [{"role": "user", "content": "Say hi."}], max_tokens=2, temperature=0)
    assert text.strip()


def test_llama_cpp_answers_depend_on_the_request_only(tmp_path):
    """At temperature 0, llama.cpp's server answered a streamed request and the same request
    unstreamed differently. The cause was not the request shape (both take the same sampling
    path) but its KV cache: a repeated prompt evaluated only its last token on top of the cached
    prefix, and logits from that batch split flipped a near-tie. Measured with the plain
    `python -m llama_cpp.server` on this prompt (2026-12-06, 2 CPU cores): fresh "北京是一名美丽…",
    the same prompt again "北京是一家美丽…". lib.core.server_main evaluates every prompt whole."""
    messages = [{"role": "user", "content": "请用中文介绍一下北京。"}]
    with embedded_server(log_path=tmp_path / "llama.log") as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="local")

        def ask(stream: bool) -> str:
            resp = client.chat.completions.create(model=srv.model, messages=messages, max_tokens=12, temperature=0,
                                                  stream=stream)
            if not stream:
                return resp.choices[0].message.content
            return "".join(c.choices[0].delta.content or "" for c in resp if c.choices)

        assert [m.id for m in client.models.list().data] == [srv.model]
        streamed = ask(stream=True)  # a fresh server: nothing cached
        again = ask(stream=False)  # the same prompt, all of it cached by the request before
        client.chat.completions.create(model=srv.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
                                       temperature=0)
        after_another = ask(stream=False)  # only the chat template's opening shared with the request before
    assert streamed.strip() and streamed == again == after_another
