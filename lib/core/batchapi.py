"""The Batch API lifecycle, one way for every phase (generation, judging): upload, create,
persist, poll, read the results.

    state = batchapi.read_state(state_path)               # None: no batch in flight
    if state is None:
        state = batchapi.begin(state_path, {"indices": [...]})  # the caller's own fields
    batch = batchapi.submit(client, state_path, state, input_path, make_lines, metadata={...})
    batch = batchapi.wait(client, batch, poll_s, label="judge batch")
    for r in batchapi.results(client, batch):             # BatchResult(custom_id, body, error)
        ...                                               # the caller meters and keeps r.body
    batchapi.end(state_path)                              # only once every result is ingested

**State.** One JSON file, written atomically at each step: the caller's fields first, then
`input_file_id` as soon as the upload returns, then `batch_id` as soon as the batch exists.
Resume: a saved batch id is polled again (no second batch, no second payment); a saved input
file id without a batch id -- a crash between the upload and the batch id being written -- is
looked up in `batches.list` by its input file before a batch is created for it; with neither
saved, the input is uploaded again (an orphaned upload costs nothing). The file is removed by
`end` only after the caller has ingested every result, so a crash while ingesting reads the
same output again (callers skip what they already wrote and meter under idempotent ids).

**Results: one rule for the output and the error file.** A batch that ended is read for
everything it has, whatever its status: an expired or cancelled batch still delivers the
replies it finished in its output file, and those were paid for (OpenAI bills the completed
requests of an expired batch). A request succeeded when its output line has status 200 and a
chat completion with choices; every other line, in either file (a non-200 response, a
request the batch never ran), is a failure carrying its error text. A failure has no usage to
meter, and the caller retries it: generation sends it again in a later round, judging records
an error judgment that a re-run asks again.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from lib.core.files import atomic_write_json, atomic_write_jsonl, read_json

ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True)
class BatchResult:
    custom_id: str
    body: dict | None  # the chat completion, when the request succeeded
    error: str = ""  # why it did not, otherwise

    @property
    def ok(self) -> bool:
        return self.body is not None


def chat_line(custom_id: str, body: dict) -> dict:
    """One line of a batch input file: a chat completion request with the raw JSON body."""
    return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}


def read_state(path: str | Path) -> dict | None:
    """The saved state of the batch in flight, or None when there is none."""
    return read_json(path)


def begin(path: str | Path, fields: dict) -> dict:
    """Save a new batch's state (the caller's fields) before anything is uploaded."""
    state = {**fields, "input_file_id": None, "batch_id": None, "created": time.time()}
    atomic_write_json(path, state)
    return state


def _save(path: str | Path, state: dict, **changes) -> None:
    state.update(changes)
    atomic_write_json(path, state)


def find_by_input(client, input_file_id: str):
    """The batch created from `input_file_id`, or None (the client pages through the list)."""
    for b in client.batches.list(limit=100):
        if b.input_file_id == input_file_id:
            return b
    return None


def submit(client, path: str | Path, state: dict, input_path: str | Path, lines: Callable[[], Iterable[dict]], *,
           metadata: dict, completion_window: str = "24h"):
    """The batch of `state`: the saved one, the one found by its input file, or a new one
    (`lines()` written to `input_path`, uploaded, then the batch created). Each id is saved
    the moment it exists."""
    if state.get("batch_id"):
        return client.batches.retrieve(state["batch_id"])
    if state.get("input_file_id"):
        found = find_by_input(client, state["input_file_id"])
        if found is not None:
            _save(path, state, batch_id=found.id)
            return found
    else:
        atomic_write_jsonl(input_path, lines())
        with open(input_path, "rb") as f:
            uploaded = client.files.create(file=f, purpose="batch")
        _save(path, state, input_file_id=uploaded.id)
    batch = client.batches.create(input_file_id=state["input_file_id"], endpoint=ENDPOINT,
                                  completion_window=completion_window, metadata=metadata)
    _save(path, state, batch_id=batch.id)
    return batch


def wait(client, batch, poll_s: float, label: str = "batch"):
    """Poll until the batch ends, printing each change of status and progress to stderr."""
    shown = None
    while batch.status not in TERMINAL:
        counts = batch.request_counts
        line = f"{label} {batch.id}: {batch.status}" + (f" {counts.completed}/{counts.total}" if counts else "")
        if line != shown:
            print(line, file=sys.stderr, flush=True)
            shown = line
        time.sleep(poll_s)
        batch = client.batches.retrieve(batch.id)
    return batch


def results(client, batch) -> list[BatchResult]:
    """Every line of an ended batch's output and error files, by the module's one rule."""
    out = []
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            out += [_result(json.loads(x)) for x in client.files.content(file_id).text.splitlines() if x.strip()]
    return out


def _result(row: dict) -> BatchResult:
    resp = row.get("response") or {}
    body = resp.get("body") or {}
    if resp.get("status_code") == 200 and body.get("choices"):
        return BatchResult(row.get("custom_id"), body)
    error = row.get("error") or body.get("error") or f"HTTP {resp.get('status_code')} without a completion"
    return BatchResult(row.get("custom_id"), None, str(error)[:300])


def end(path: str | Path) -> None:
    """Forget the batch: every result has been ingested."""
    Path(path).unlink(missing_ok=True)
