"""A fault-injecting HTTP proxy in front of an OpenAI-compatible server (a test utility).

Real APIs rate-limit, fail, hang, drop connections and cut replies short; the pipeline has to
survive all of that without losing paid-for work or over-spending. This proxy puts those
faults between the official `openai` client and a real server (the embedded
`transformers serve`, or anything else that speaks the protocol), over real HTTP on
127.0.0.1, at configurable and *seeded* rates:

    with FaultProxy(local_server.base_url, rates=FaultRates(rate_limit=0.2, drop=0.1), seed=0) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="local")
        ...
        proxy.stats            # {"requests": 40, "ok": 28, "rate_limit": 8, "drop": 4, ...}

Faults, and what a client sees:

    rate_limit    429 + `Retry-After` (seconds), OpenAI's error body   -> openai.RateLimitError
    server_error  500, OpenAI's error body                             -> openai.InternalServerError
    drop          request read, then the socket is closed, no reply    -> openai.APIConnectionError
    slow          `slow_s` of added latency, then the real reply       -> APITimeoutError if timeout < slow_s
    truncate      forwarded with max_tokens clamped to `truncate_tokens`; the real reply comes back
                  with finish_reason "length" and the server's real usage (billed like the API does)
    malformed     200 with a JSON body cut mid-way (never forwarded)   -> openai.APIResponseValidationError
                                                                          or a JSON decode error
    unauthorized  401 invalid_api_key                                  -> openai.AuthenticationError

Which fault a request gets is drawn from `random.Random(seed)` in arrival order, one draw per
faultable request (POSTs to the completion paths), so for a given seed and number of requests
the counters are exact and reproducible whatever the concurrency. `script` forces the
faults of the first requests (e.g. `["rate_limit", "ok"]`), before the rates take over.
`require_key` makes every request whose bearer token differs get a 401, like a wrong key on
api.openai.com. With `upstream=None` there is no server behind: only faults and 401s are
answered (requests that would be forwarded get a 502).

Run the proxy by hand in front of a running server:

    python -m lib.testing.faultproxy http://127.0.0.1:8000/v1 --rate-limit 0.2 --drop 0.1 --seed 1
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import asdict, dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("rate_limit", "server_error", "drop", "slow", "truncate", "malformed", "unauthorized")
# Only calls that generate (and cost money) get faults; /v1/models, /health and file
# downloads pass through untouched so health checks and fail-fast checks stay meaningful.
FAULT_PATHS = ("/chat/completions", "/completions", "/responses", "/embeddings")
# Hop-by-hop headers are about one connection and must not be relayed (RFC 9110 7.6.1).
HOP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "content-length", "host"}


@dataclass
class FaultRates:
    """Probability of each fault per faultable request; the rest are forwarded untouched."""
    rate_limit: float = 0.0
    server_error: float = 0.0
    drop: float = 0.0
    slow: float = 0.0
    truncate: float = 0.0
    malformed: float = 0.0
    unauthorized: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"FaultRates.{f.name}={v}: a rate is a probability in [0, 1]")
        if sum(asdict(self).values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to more than 1: {asdict(self)}")

    def draw(self, rng: random.Random) -> str:
        u = rng.random()  # always exactly one draw per request: the sequence depends on the seed only
        acc = 0.0
        for name in FAULTS:
            acc += getattr(self, name)
            if u < acc:
                return name
        return "ok"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: "FaultProxy"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client's httpx pool expects
    server: _Server

    def log_message(self, fmt, *args):  # quiet: tests read counters, not access logs
        pass

    def _any(self) -> None:
        self.server.proxy._handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any


class FaultProxy:
    """Context manager: a threaded HTTP proxy on 127.0.0.1 that injects seeded faults."""

    def __init__(self, upstream: str | None, *, rates: FaultRates | None = None, seed: int = 0,
                 script: list[str] | tuple[str, ...] = (), retry_after: float = 0.05, slow_s: float = 1.0,
                 truncate_tokens: int = 3, require_key: str | None = None, host: str = "127.0.0.1",
                 upstream_timeout: float = 300.0):
        for name in script:
            if name not in FAULTS + ("ok",):
                raise ValueError(f"unknown fault {name!r} in script: use one of {FAULTS + ('ok',)}")
        self.rates = rates or FaultRates()
        self.seed = seed
        self.script = list(script)
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.truncate_tokens = truncate_tokens
        self.require_key = require_key
        self.host = host
        self.upstream_timeout = upstream_timeout
        if upstream:
            u = urllib.parse.urlsplit(upstream)
            self._up_host, self._up_port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
            self._up_https = u.scheme == "https"
            self._prefix = u.path.rstrip("/")  # e.g. "/v1": the proxy mirrors the upstream's layout
        else:
            self._up_host = None
            self._prefix = "/v1"
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counts: Counter = Counter()
        self.events: list[tuple[int, str, str, str]] = []  # (n, method, path, fault), arrival order
        # What the upstream generated and a client received, i.e. what an API bills:
        # {"id", "usage", "fault"} per forwarded 200 reply that carried usage.
        self.billed: list[dict] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FaultProxy":
        self._httpd = _Server((self.host, 0), _Handler)
        self._httpd.proxy = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start the proxy first"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{self._prefix}"

    @property
    def stats(self) -> dict[str, int]:
        """Counters: requests, forwarded, ok and one per fault injected (a snapshot)."""
        with self._lock:
            return dict(self._counts)

    # ------------------------------------------------------------------ decisions
    def _decide(self, method: str, path: str, auth: str) -> str:
        with self._lock:
            self._counts["requests"] += 1
            n = self._counts["requests"]
            if self.require_key is not None and auth != f"Bearer {self.require_key}":
                fault = "unauthorized"
            elif method == "POST" and path.split("?")[0].endswith(FAULT_PATHS):
                self._counts["faultable"] += 1
                fault = self.script.pop(0) if self.script else self.rates.draw(self._rng)
            else:
                fault = "ok"
            self._counts[fault] += 1
            self.events.append((n, method, path, fault))
            return fault

    # ------------------------------------------------------------------ handling
    def _handle(self, h: _Handler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        fault = self._decide(h.command, h.path, h.headers.get("Authorization", ""))
        if fault == "rate_limit":
            return self._error(h, 429, "rate_limit_exceeded", "Rate limit reached (injected by FaultProxy).",
                               {"Retry-After": f"{self.retry_after:g}", "x-ratelimit-remaining-requests": "0"})
        if fault == "server_error":
            return self._error(h, 500, "server_error", "The server had an error (injected by FaultProxy).")
        if fault == "unauthorized":
            return self._error(h, 401, "invalid_api_key", "Incorrect API key provided (FaultProxy).")
        if fault == "drop":
            h.close_connection = True
            try:  # a peer that vanishes mid-request: no status line, no bytes
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault == "malformed":
            whole = json.dumps({"id": "chatcmpl-faultproxy", "object": "chat.completion", "created": int(time.time()),
                                "model": "faultproxy", "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "a reply cut in transit"}}],
                                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
            return self._send(h, 200, whole[: len(whole) // 2].encode(), {"Content-Type": "application/json"})
        if fault == "slow":
            time.sleep(self.slow_s)
        if fault == "truncate":
            body = self._clamp(body)
        status, headers, payload = self._forward(h, body)
        if fault == "truncate" and status == 200:
            payload = self._mark_length(payload)
        with self._lock:
            self._counts["forwarded"] += 1
            if status == 200:
                self._note_billed(payload, fault)
        self._send(h, status, payload, headers)

    def _clamp(self, body: bytes) -> bytes:
        try:
            req = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return body
        for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
            if key in req or key == "max_tokens":
                req[key] = min(int(req.get(key) or self.truncate_tokens), self.truncate_tokens)
        return json.dumps(req).encode()

    def _note_billed(self, payload: bytes, fault: str) -> None:
        try:
            resp = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return
        if isinstance(resp, dict) and resp.get("usage"):
            self.billed.append({"id": resp.get("id"), "usage": resp["usage"], "fault": fault})

    @staticmethod
    def _mark_length(payload: bytes) -> bytes:
        try:
            resp = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return payload  # a stream or a foreign body: relayed as it came
        for choice in resp.get("choices") or []:
            choice["finish_reason"] = "length"  # what the API says when max_tokens cut the reply
        return json.dumps(resp).encode()

    def _forward(self, h: _Handler, body: bytes) -> tuple[int, dict, bytes]:
        if self._up_host is None:
            return 502, {"Content-Type": "application/json"}, json.dumps(
                {"error": {"message": "FaultProxy has no upstream", "type": "proxy_error"}}).encode()
        conn_cls = http.client.HTTPSConnection if self._up_https else http.client.HTTPConnection
        conn = conn_cls(self._up_host, self._up_port, timeout=self.upstream_timeout)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_HEADERS}
            headers["Content-Length"] = str(len(body))
            conn.request(h.command, h.path, body=body if body or h.command == "POST" else None, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            out = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_HEADERS}
            return resp.status, out, payload
        except OSError as e:
            return 502, {"Content-Type": "application/json"}, json.dumps(
                {"error": {"message": f"FaultProxy upstream error: {e}", "type": "proxy_error"}}).encode()
        finally:
            conn.close()

    def _error(self, h: _Handler, status: int, code: str, message: str, extra: dict | None = None) -> None:
        body = json.dumps({"error": {"message": message, "type": code, "param": None, "code": code}}).encode()
        self._send(h, status, body, {"Content-Type": "application/json", **(extra or {})})

    @staticmethod
    def _send(h: _Handler, status: int, payload: bytes, headers: dict) -> None:
        try:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(payload)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True  # the client gave up (its own timeout): nothing to deliver


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lib.testing.faultproxy", description=__doc__.split("\n\n")[0])
    ap.add_argument("upstream", help="base URL of the real server, e.g. http://127.0.0.1:8000/v1")
    for name in FAULTS:
        ap.add_argument(f"--{name.replace('_', '-')}", type=float, default=0.0, metavar="P", help=f"rate of {name}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slow-s", type=float, default=1.0)
    ap.add_argument("--retry-after", type=float, default=1.0)
    args = ap.parse_args(argv)
    rates = FaultRates(**{n: getattr(args, n) for n in FAULTS})
    with FaultProxy(args.upstream, rates=rates, seed=args.seed, slow_s=args.slow_s,
                    retry_after=args.retry_after) as proxy:
        print(f"fault proxy on {proxy.base_url} -> {args.upstream} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(5)
                print(proxy.stats, flush=True)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
