"""Sending one request to the teacher: the request body, and retries with backoff.

Retried: 429, 5xx, 408/409, timeouts, dropped connections and cut or garbled bodies (the
server billed nothing we could record, and the same request may succeed). Not retried: a
refused key or a rejected request (wrong model name, max_tokens too large): one UserError.
The wait is what the server asked for (Retry-After), else exponential backoff with jitter.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections import Counter
from pathlib import Path

import openai

from lib.core.client import Endpoint
from lib.core.errors import UserError
from lib.generate.config import GenerateConfig
from lib.generate.prompt import Request


def request_body(cfg: GenerateConfig, ep: Endpoint, req: Request) -> dict:
    """The chat-completion request for `req` (also the body of a Batch API line)."""
    max_tokens = cfg.answer_max_tokens if req.kind == "answer" else cfg.max_tokens
    body = {"model": ep.model, "messages": list(req.messages), "max_tokens": max_tokens,
            "temperature": cfg.temperature, "top_p": cfg.top_p,
            # a per-request seed makes a resumed or repeated run resample the same way
            "seed": cfg.run_seed * 1_000_003 + req.index, **ep.extra}
    if cfg.server_generation_config:
        body["extra_body"] = {"generation_config": json.dumps(server_generation_config(cfg, ep))}
    return body


def server_generation_config(cfg: GenerateConfig, ep: Endpoint) -> dict:
    gen = {}
    path = Path(ep.model) / "generation_config.json"
    if path.exists():  # keep the model's EOS/pad ids, or generation runs to max_tokens
        gen = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    gen.update(do_sample=cfg.temperature > 0, temperature=cfg.temperature or 1.0,
               top_p=cfg.top_p, max_new_tokens=max(cfg.max_tokens, cfg.answer_max_tokens),
               repetition_penalty=cfg.repetition_penalty)
    return gen


def retry_after_s(err: Exception) -> float | None:
    """Seconds the server asked us to wait (Retry-After / retry-after-ms), if it said."""
    resp = getattr(err, "response", None)
    headers = getattr(resp, "headers", None) or {}
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return float(ra)
    except ValueError:
        when = email.utils.parsedate_to_datetime(ra)
        return max(0.0, when.timestamp() - time.time()) if when else None


def retry_reason(err: Exception) -> str | None:
    """The counter a retryable error goes to, or None when retrying cannot help."""
    if isinstance(err, openai.APITimeoutError):
        return "timeout"
    if isinstance(err, openai.APIConnectionError):
        return "connection"
    if isinstance(err, openai.RateLimitError):
        return "429"
    if isinstance(err, openai.APIStatusError):
        if err.status_code >= 500:
            return "5xx"
        if err.status_code in (408, 409):
            return str(err.status_code)
    return None


async def send(client: openai.AsyncOpenAI, cfg: GenerateConfig, ep: Endpoint, req: Request,
               retries: Counter) -> dict:
    """The chat completion for `req` as a JSON dict; every retry is counted in `retries`."""
    attempt = 0
    while True:
        try:
            # The raw JSON is all we keep; skipping the SDK's pydantic models saves CPU per
            # reply, which is what caps throughput at high concurrency. Errors still raise
            # the SDK's typed exceptions (RateLimitError, ...), with headers.
            raw = await client.chat.completions.with_raw_response.create(**request_body(cfg, ep, req))
            return json.loads(raw.content)
        except openai.AuthenticationError:
            raise UserError(f"{ep.base_url} refused the key in {ep.api_key_env}: export a valid key") from None
        except (openai.APIError, json.JSONDecodeError) as e:
            reason = "malformed" if isinstance(e, json.JSONDecodeError) else retry_reason(e)
            if reason is None:
                raise UserError(f"the teacher rejected request {req.id}: {e}; fix the model name or max_tokens") from None
            retries[reason] += 1
            attempt += 1
            if attempt > cfg.max_retries:
                raise UserError(
                    f"the teacher at {ep.base_url} failed {attempt} times ({reason}) on request {req.id}: "
                    "check the server, then re-run to resume (finished work is kept)") from None
            wait = retry_after_s(e) if isinstance(e, openai.APIError) else None
            if wait is None:
                wait = min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            await asyncio.sleep(wait)
