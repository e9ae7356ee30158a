"""The one way the project talks to an LLM: the official `openai` client.

An `Endpoint` names an OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama, or the
embedded local server) and the *name of the environment variable* that holds its key; the
key itself is read from the environment at call time and never stored, logged or passed
as a notebook parameter.
"""
from __future__ import annotations

import os
import urllib.parse
from dataclasses import asdict, dataclass, field
from typing import Any

import openai

from lib.core.errors import UserError

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"}
LOCAL_KEY = "local-no-key"  # servers on loopback ignore the key, the client needs a string


@dataclass
class Endpoint:
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    # Model name to price calls at (genai-prices). None: priced from `model` when the
    # endpoint is remote, $0 when it is a local server.
    price_model: str | None = None
    # Extra request fields sent with every call (e.g. {"seed": 0}).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        host = urllib.parse.urlparse(self.base_url).hostname or ""
        return host in LOCAL_HOSTS or host.startswith("127.")

    @property
    def billed_as(self) -> str | None:
        """The one billing rule: the model this endpoint's calls are priced as, or None when
        they cost nothing. An explicit `price_model` is always charged, also on a local server
        (to rehearse a paid run, or to test a cap); otherwise a remote endpoint is priced as
        its `model` and a local server is free. Ledger, guards and checks all ask this."""
        if self.price_model:
            return self.price_model
        return None if self.is_local else self.model

    def api_key(self) -> str:
        if self.is_local:
            return os.environ.get(self.api_key_env) or LOCAL_KEY
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise UserError(
                f"no API key for {self.base_url}: export {self.api_key_env}=... in the environment "
                "(or a SkyPilot secret); keys are never notebook parameters"
            )
        return key

    def public(self) -> dict:
        """What may be written to disk: everything but the key (which is never held here)."""
        return asdict(self)


def make_client(ep: Endpoint, *, timeout: float = 120.0, max_retries: int = 2) -> openai.OpenAI:
    return openai.OpenAI(base_url=ep.base_url, api_key=ep.api_key(), timeout=timeout, max_retries=max_retries)


def make_async_client(ep: Endpoint, *, timeout: float = 120.0, max_retries: int = 0) -> openai.AsyncOpenAI:
    # Async callers run their own retry loop with per-reason counters, hence no SDK retries.
    return openai.AsyncOpenAI(base_url=ep.base_url, api_key=ep.api_key(), timeout=timeout, max_retries=max_retries)


def check_endpoint(ep: Endpoint, *, timeout: float = 10.0) -> None:
    """Fail fast with one line when the endpoint is unreachable or the key is refused."""
    client = make_client(ep, timeout=timeout, max_retries=0)
    try:
        client.models.list()
    except openai.AuthenticationError:
        raise UserError(f"{ep.base_url} refused the key in {ep.api_key_env}: export a valid key") from None
    except (openai.APIConnectionError, openai.APITimeoutError):
        raise UserError(
            f"cannot reach the teacher at {ep.base_url}: start the server or fix the base URL "
            "(leave it empty to use the embedded local model)"
        ) from None
    except openai.APIStatusError:
        pass  # it answered; some servers have no working /models, reachability is what we checked


def chat(
    client: openai.OpenAI,
    ep: Endpoint,
    messages: list[dict],
    *,
    ledger=None,
    phase: str = "data",
    purpose: str = "",
    **params,
):
    """One chat completion; its usage goes to the ledger. Returns (text, response)."""
    resp = client.chat.completions.create(model=ep.model, messages=messages, **{**ep.extra, **params})
    if ledger is not None:
        ledger.record_api(phase=phase, endpoint=ep, usage=resp.usage, request_id=resp.id, purpose=purpose)
    text = resp.choices[0].message.content or ""
    return text, resp
