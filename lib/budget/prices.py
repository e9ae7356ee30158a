"""API prices from `genai-prices` (a maintained price table), with budgets.yaml overrides.

    usd, source = api_cost("gpt-4o-mini", prompt_tokens=1200, completion_tokens=300)
    usd, source = api_cost("gpt-4o-mini", 1200, 300, cached_tokens=1000, batch=True)

`source` says where the number came from, so a ledger record can be audited later
("genai-prices 0.2.3 openai/gpt-4o-mini batch", "budgets.yaml prices.my-model", ...).
OpenAI's Batch API charges half the standard rate; genai-prices models that as a price
variant for some models, and where it has none we apply the documented 50% and say so.
"""
from __future__ import annotations

import functools
import warnings
from importlib.metadata import version
from typing import Any, Mapping

from lib.core.errors import UserError

BATCH_DISCOUNT = 0.5  # OpenAI Batch API: "50% cost discount compared to synchronous APIs"


def usage_tokens(usage: Any) -> tuple[int, int, int]:
    """(prompt, completion, cached) from an openai CompletionUsage, a Responses usage or a dict."""
    if usage is None:
        return 0, 0, 0
    if hasattr(usage, "model_dump"):
        usage = usage.model_dump()
    elif not isinstance(usage, Mapping):
        usage = {k: getattr(usage, k, None) for k in ("prompt_tokens", "completion_tokens", "input_tokens",
                                                      "output_tokens", "prompt_tokens_details", "input_tokens_details")}
    prompt = usage.get("prompt_tokens")
    if prompt is None:
        prompt = usage.get("input_tokens")
    completion = usage.get("completion_tokens")
    if completion is None:
        completion = usage.get("output_tokens")
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    if not isinstance(details, Mapping):
        details = details.model_dump() if hasattr(details, "model_dump") else vars(details)
    cached = details.get("cached_tokens") or 0
    return int(prompt or 0), int(completion or 0), int(cached or 0)


@functools.lru_cache(maxsize=None)
def _genai_version() -> str:
    return version("genai-prices")


def _has_batch_variant(model_info) -> bool:
    return any(dict(v.when) == {"processing": "batch"} for v in (model_info.price_variants or ()))


def api_cost(model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
             batch: bool = False, *, prices: Mapping | None = None) -> tuple[float, str]:
    """USD for one call and where the price came from. `prices`: budgets.prices overrides."""
    if cached_tokens > prompt_tokens:
        cached_tokens = prompt_tokens  # servers report cached as a subset of prompt tokens
    override = (prices or {}).get(model)
    if override is not None:
        cached_rate = override.cached_input if override.cached_input is not None else override.input
        usd = ((prompt_tokens - cached_tokens) * override.input + cached_tokens * cached_rate
               + completion_tokens * override.output) / 1e6
        source = f"budgets.yaml prices.{model}"
        if batch:
            usd *= override.batch_discount
            source += f" x{override.batch_discount:g} batch"
        return usd, source

    from genai_prices import Usage, calc_price

    usage = Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens, cache_read_tokens=cached_tokens)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calc = calc_price(usage, model)
            if batch and _has_batch_variant(calc.model):
                calc = calc_price(usage, model, provider_id=calc.provider.id, price_context={"processing": "batch"})
                return float(calc.total_price), f"genai-prices {_genai_version()} {calc.provider.id}/{calc.model.id} batch"
    except LookupError:
        raise UserError(
            f"no price known for model {model!r}: add `prices: {{{model}: {{input: <USD/1M>, output: <USD/1M>}}}}` "
            "to budgets.yaml or set price_model to a model genai-prices knows (e.g. gpt-4o-mini)"
        ) from None
    usd = float(calc.total_price)
    source = f"genai-prices {_genai_version()} {calc.provider.id}/{calc.model.id}"
    if batch:
        usd *= BATCH_DISCOUNT
        source += f" x{BATCH_DISCOUNT:g} (documented Batch API discount)"
    return usd, source


def check_priced(model: str, *, prices: Mapping | None = None) -> str:
    """Fail before spending anything when a paid model has no price; returns the price source."""
    return api_cost(model, 1, 1, prices=prices)[1]
