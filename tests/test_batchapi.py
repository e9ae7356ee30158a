"""The one Batch API lifecycle (lib.core.batchapi) against the protocol-level test server:
state saved at each step, resume by batch id and by input file id, and the one rule for the
output and error files."""
from __future__ import annotations

import json
import time

import openai
import pytest

from lib.core import batchapi
from lib.core.server import free_port
from lib.testing.batch_server import CANNED_REPLY, BatchServer


def _lines(n: int) -> list[dict]:
    return [batchapi.chat_line(f"r{i}", {"model": "canned", "messages": [{"role": "user", "content": f"task {i}"}]})
            for i in range(n)]


def test_a_failed_line_is_a_failure_and_the_rest_are_kept(tmp_path):
    state_path, input_path = tmp_path / "batch.json", tmp_path / "batch-input.jsonl"
    with BatchServer(None) as api:
        client = openai.OpenAI(base_url=api.base_url, api_key="test")
        api.inject((500, None))  # the batch's first line fails inside the batch: its error file
        state = batchapi.begin(state_path, {"mine": 1})
        batch = batchapi.submit(client, state_path, state, input_path, lambda: _lines(3), metadata={"t": "x"})
        saved = json.loads(state_path.read_text())
        assert saved["mine"] == 1 and saved["input_file_id"] and saved["batch_id"] == batch.id
        assert [json.loads(x)["custom_id"] for x in input_path.read_text().splitlines()] == ["r0", "r1", "r2"]
        batch = batchapi.wait(client, batch, 0.05)
        assert batch.status == "completed" and batch.error_file_id and batch.output_file_id
        results = {r.custom_id: r for r in batchapi.results(client, batch)}
    assert set(results) == {"r0", "r1", "r2"}
    assert not results["r0"].ok and "injected 500" in results["r0"].error
    assert all(results[c].ok and results[c].body["choices"] for c in ("r1", "r2"))
    batchapi.end(state_path)
    assert batchapi.read_state(state_path) is None


def test_resume_finds_the_same_batch_by_id_or_by_input_file(tmp_path):
    state_path, input_path = tmp_path / "batch.json", tmp_path / "in.jsonl"
    with BatchServer(None, hold_batches=True) as api:
        client = openai.OpenAI(base_url=api.base_url, api_key="test")
        state = batchapi.begin(state_path, {})
        first = batchapi.submit(client, state_path, state, input_path, lambda: _lines(2), metadata={})
        # A crash after the batch was created but before its id was saved: the input file finds it.
        saved = {**batchapi.read_state(state_path), "batch_id": None}
        state_path.write_text(json.dumps(saved))
        again = batchapi.submit(client, state_path, batchapi.read_state(state_path), input_path,
                                lambda: [][0], metadata={})  # nothing is uploaded again
        assert again.id == first.id and batchapi.read_state(state_path)["batch_id"] == first.id
        # A crash while polling: the saved batch id is polled again.
        resumed = batchapi.submit(client, state_path, batchapi.read_state(state_path), input_path,
                                  lambda: [][0], metadata={})
        assert resumed.id == first.id and list(api.state.batches) == [first.id]  # one batch, paid once
        api.release_batches()
        assert batchapi.wait(client, resumed, 0.05).status == "completed"


def test_the_test_server_speaks_the_protocol_the_client_reads(tmp_path):
    """The stand-in for OpenAI's Batch API answers the real client as OpenAI does: typed errors
    (404 NotFound, 400 BadRequest, 429 with Retry-After, 502 from a dead upstream), list shapes,
    and a held batch that cancels to `cancelled` with its counts. A stand-in that drifted from the
    protocol would let lib.core.batchapi pass here and fail against the real service."""
    with BatchServer(None, hold_batches=True) as api:
        client = openai.OpenAI(base_url=api.base_url, api_key="test", max_retries=0)
        assert [m.id for m in client.models.list()] == ["canned"]
        with pytest.raises(openai.NotFoundError, match="no file file-nope"):
            client.files.retrieve("file-nope")
        with pytest.raises(openai.BadRequestError, match="not an uploaded file"):
            client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
        path = tmp_path / "in.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in _lines(2)))
        up = client.files.create(file=path.open("rb"), purpose="batch")
        assert client.files.retrieve(up.id).bytes == path.stat().st_size
        assert client.files.content(up.id).read() == path.read_bytes()
        with pytest.raises(openai.BadRequestError, match="not supported"):
            client.batches.create(input_file_id=up.id, endpoint="/v1/embeddings", completion_window="24h")
        batch = client.batches.create(input_file_id=up.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert [b.id for b in client.batches.list()] == [batch.id]
        assert client.batches.cancel(batch.id).status == "cancelling"
        with pytest.raises(openai.NotFoundError):
            client.batches.cancel("batch_nope")
        api.release_batches()
        for _ in range(200):
            done = client.batches.retrieve(batch.id)
            if done.status == "cancelled":
                break
            time.sleep(0.01)
        assert done.status == "cancelled" and done.request_counts.completed == 0
        api.inject((429, 7))
        with pytest.raises(openai.RateLimitError) as hit:
            client.chat.completions.create(model="canned", messages=[{"role": "user", "content": "hi"}])
        assert hit.value.response.headers["retry-after"] == "7"
        reply = client.chat.completions.create(model="canned", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == CANNED_REPLY and reply.usage.completion_tokens > 0
        with pytest.raises(openai.NotFoundError, match="unknown route"):
            client.get("/nowhere", cast_to=object)
    with BatchServer(f"http://127.0.0.1:{free_port()}/v1") as dead:
        client = openai.OpenAI(base_url=dead.base_url, api_key="test", max_retries=0)
        with pytest.raises(openai.InternalServerError, match="upstream unreachable"):
            client.models.list()
