"""A local OpenAI-compatible front end: Files + Batches, and chat with fault injection.

No local server implements OpenAI's Batch API, so this one does, over real HTTP, so that
the real `openai` client (files.create, batches.create/retrieve/list/cancel,
files.content) can be tested against it. Each batch line's chat request is forwarded to
an upstream OpenAI-compatible server (the real embedded model in tests). The same server
also forwards `/v1/chat/completions` and can inject faults (429 with Retry-After, 500,
503) and latency in front of it, to test retries. A fault queued while a batch runs fails
the batch's next line instead: that line goes to the batch's error file with the fault's
status, as a request that failed inside a real batch does. With `upstream=None` it answers chat
itself with a fixed numbered task list after `latency_s`: the stand-in for a fast remote
API that the throughput benchmark needs (the local model serves one request at a time).

    with BatchServer(upstream=local_server.base_url) as api:
        client = openai.OpenAI(base_url=api.base_url, api_key="test")

Run standalone: python -m lib.testing.batch_server --upstream http://127.0.0.1:8000/v1
"""
from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lib.core.server import free_port

CANNED_REPLY = """Explain why the sky looks blue during the day.
4. Input:
<noinput>
4. Output:
Air molecules scatter short blue wavelengths of sunlight much more than red ones, so blue light reaches our eyes from every direction.
###
5. Instruction: Rewrite the sentence in the passive voice.
5. Input:
The committee approved the new budget.
5. Output:
The new budget was approved by the committee.
###
6. Instruction: List three renewable sources of energy.
6. Input:
<noinput>
6. Output:
Solar power, wind power and hydroelectric power."""


def _now() -> int:
    return int(time.time())


class _State:
    def __init__(self, upstream: str | None, latency_s: float, faults, hold: bool):
        self.upstream = upstream.rstrip("/") if upstream else None
        self.latency_s = latency_s
        self.faults = deque(faults)  # each: (status, retry_after_s or None)
        self.lock = threading.Lock()
        self.files: dict[str, dict] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.counter = itertools.count()
        self.chat_calls = 0
        self.faults_served = 0
        self.release = threading.Event()
        if not hold:
            self.release.set()


class BatchServer:
    def __init__(self, upstream: str | None = None, *, latency_s: float = 0.0, faults=(), hold_batches: bool = False,
                 host: str = "127.0.0.1", port: int | None = None, canned_reply: str = CANNED_REPLY):
        self.host, self.port = host, port or free_port(host)
        self.state = _State(upstream, latency_s, faults, hold_batches)
        self.canned_reply = canned_reply
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def release_batches(self) -> None:
        """Let held batches run (tests hold them to kill the client while a batch is pending)."""
        self.state.release.set()

    def inject(self, *faults) -> None:
        """Queue faults for the next chat calls or batch lines: (status, retry_after_s | None)."""
        with self.state.lock:
            self.state.faults.extend(faults)

    def start(self) -> "BatchServer":
        handler = type("Handler", (_Handler,), {"state": self.state, "canned_reply": self.canned_reply})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="batch-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self.state.release.set()
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "BatchServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    state: _State
    canned_reply: str
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- plumbing ----------------------------------------------------------------------
    def _send(self, status: int, body, *, ctype: str = "application/json", headers: dict | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, *, headers: dict | None = None, etype: str = "invalid_request_error"):
        self._send(status, {"error": {"message": message, "type": etype, "param": None, "code": None}}, headers=headers)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _path(self) -> list[str]:
        path = self.path.split("?", 1)[0].rstrip("/")
        parts = [p for p in path.split("/") if p]
        return parts[1:] if parts and parts[0] == "v1" else parts

    # -- routes ------------------------------------------------------------------------
    def do_GET(self) -> None:
        p = self._path()
        st = self.state
        if p == ["health"]:
            return self._send(200, {"status": "ok"})
        if p == ["models"]:
            if st.upstream:
                return self._forward_get("/models")
            return self._send(200, {"object": "list", "data": [{"id": "canned", "object": "model", "created": 0, "owned_by": "test"}]})
        if len(p) == 2 and p[0] == "files":
            f = st.files.get(p[1])
            return self._send(200, f) if f else self._error(404, f"no file {p[1]}")
        if len(p) == 3 and p[0] == "files" and p[2] == "content":
            data = st.contents.get(p[1])
            return self._send(200, data, ctype="application/octet-stream") if data is not None else self._error(404, f"no file {p[1]}")
        if p == ["batches"]:
            with st.lock:
                data = sorted(st.batches.values(), key=lambda b: b["created_at"], reverse=True)
            return self._send(200, {"object": "list", "data": data, "has_more": False,
                                    "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})
        if len(p) == 2 and p[0] == "batches":
            b = st.batches.get(p[1])
            return self._send(200, b) if b else self._error(404, f"no batch {p[1]}")
        self._error(404, f"unknown route GET {self.path}")

    def do_POST(self) -> None:
        p = self._path()
        body = self._body()
        if p == ["chat", "completions"]:
            return self._chat(body)
        if p == ["files"]:
            return self._upload(body)
        if p == ["batches"]:
            return self._create_batch(json.loads(body or b"{}"))
        if len(p) == 3 and p[0] == "batches" and p[2] == "cancel":
            b = self.state.batches.get(p[1])
            if not b:
                return self._error(404, f"no batch {p[1]}")
            with self.state.lock:
                if b["status"] in ("validating", "in_progress"):
                    b.update(status="cancelling", cancelling_at=_now())
            return self._send(200, b)
        self._error(404, f"unknown route POST {self.path}")

    # -- chat --------------------------------------------------------------------------
    def _chat(self, body: bytes) -> None:
        st = self.state
        with st.lock:
            st.chat_calls += 1
            fault = st.faults.popleft() if st.faults else None
            if fault:
                st.faults_served += 1
        if fault:
            status, retry_after = fault
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            etype = "rate_limit_exceeded" if status == 429 else "server_error"
            return self._error(status, f"injected {status}", headers=headers, etype=etype)
        if st.latency_s:
            time.sleep(st.latency_s)
        status, data = self.chat_completion(json.loads(body or b"{}"))
        self._send(status, data)

    def chat_completion(self, req: dict) -> tuple[int, dict]:
        st = self.state
        if st.upstream:
            return _post_json(f"{st.upstream}/chat/completions", req)
        text = self.canned_reply
        n_out = len(text.split())
        n_in = sum(len(str(m.get("content", "")).split()) for m in req.get("messages", []))
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": _now(),
            "model": req.get("model", "canned"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
        }

    def _forward_get(self, path: str) -> None:
        try:
            with urllib.request.urlopen(f"{self.state.upstream}{path}", timeout=30) as r:
                return self._send(r.status, r.read())
        except urllib.error.HTTPError as e:
            return self._send(e.code, e.read())
        except (urllib.error.URLError, OSError) as e:
            return self._error(502, f"upstream unreachable: {e}", etype="server_error")

    # -- files and batches ---------------------------------------------------------------
    def _upload(self, body: bytes) -> None:
        ctype = self.headers.get("Content-Type", "")
        msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
        fields, data, filename = {}, None, "upload.jsonl"
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if name == "file":
                data = payload
                filename = part.get_filename() or filename
            else:
                fields[name] = payload.decode()
        if data is None:
            return self._error(400, "multipart upload has no 'file' part")
        st = self.state
        fid = f"file-{uuid.uuid4().hex[:16]}"
        obj = {"id": fid, "object": "file", "bytes": len(data), "created_at": _now(), "filename": filename,
               "purpose": fields.get("purpose", "batch"), "status": "processed"}
        with st.lock:
            st.files[fid] = obj
            st.contents[fid] = data
        self._send(200, obj)

    def _create_batch(self, req: dict) -> None:
        st = self.state
        fid = req.get("input_file_id")
        if fid not in st.contents:
            return self._error(400, f"input_file_id {fid!r} is not an uploaded file")
        if req.get("endpoint") != "/v1/chat/completions":
            return self._error(400, f"endpoint {req.get('endpoint')!r} is not supported here")
        lines = [json.loads(l) for l in st.contents[fid].decode().splitlines() if l.strip()]
        bid = f"batch_{uuid.uuid4().hex[:16]}"
        b = {"id": bid, "object": "batch", "endpoint": req["endpoint"], "input_file_id": fid,
             "completion_window": req.get("completion_window", "24h"), "status": "validating",
             "created_at": _now(), "metadata": req.get("metadata"), "output_file_id": None, "error_file_id": None,
             "request_counts": {"total": len(lines), "completed": 0, "failed": 0}}
        with st.lock:
            st.batches[bid] = b
        threading.Thread(target=self._run_batch, args=(b, lines), daemon=True).start()
        self._send(200, b)

    def _run_batch(self, b: dict, lines: list[dict]) -> None:
        st = self.state
        with st.lock:
            if b["status"] == "validating":  # a cancel that came first stands, as OpenAI's does
                b.update(status="in_progress", in_progress_at=_now())
        st.release.wait()
        out, err = [], []
        for line in lines:
            if b["status"] == "cancelling":
                break
            with st.lock:
                fault = st.faults.popleft() if st.faults else None
                if fault:
                    st.faults_served += 1
            if fault:
                status, body = fault[0], {"error": {"message": f"injected {fault[0]}", "type": "server_error"}}
            else:
                status, body = self.chat_completion(line.get("body") or {})
            row = {"id": f"batch_req_{uuid.uuid4().hex[:12]}", "custom_id": line.get("custom_id"),
                   "response": {"status_code": status, "request_id": uuid.uuid4().hex, "body": body}, "error": None}
            (out if status == 200 else err).append(row)
            with st.lock:
                b["request_counts"]["completed" if status == 200 else "failed"] += 1
        with st.lock:
            cancelled = b["status"] == "cancelling"  # read before "finalizing" overwrites it
            b.update(status="finalizing", finalizing_at=_now())
            for rows, key in ((out, "output_file_id"), (err, "error_file_id")):
                if rows:
                    fid = f"file-{uuid.uuid4().hex[:16]}"
                    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
                    st.files[fid] = {"id": fid, "object": "file", "bytes": len(data), "created_at": _now(),
                                     "filename": f"{b['id']}_{key}.jsonl", "purpose": "batch_output", "status": "processed"}
                    st.contents[fid] = data
                    b[key] = fid
            if cancelled:
                b.update(status="cancelled", cancelled_at=_now())
            else:
                b.update(status="completed", completed_at=_now())


def _post_json(url: str, payload: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=900) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, {"error": {"message": str(e), "type": "server_error"}}
    except (urllib.error.URLError, OSError) as e:
        return 502, {"error": {"message": f"upstream unreachable: {e}", "type": "server_error"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", default=None, help="OpenAI-compatible base URL to forward chat to (none: canned reply)")
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every chat call")
    args = ap.parse_args()
    srv = BatchServer(args.upstream, latency_s=args.latency, port=args.port).start()
    print(f"serving {srv.base_url}", flush=True)
    try:
        srv._thread.join()
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
