"""budgets.yaml: per-phase targets, hard caps and warn levels, price overrides, references.

    budgets = load_budgets("budgets.yaml")      # UserError with one line on any bad key/value
    budgets.phase("training").cap               # 400.0
    budgets.warn_usd("training")                # 320.0

Every check names the key (``phases.training.cap``) and the fix, because a budget file is
the one place where a typo silently costs money.
"""
from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lib.core.errors import UserError
from lib.core.paths import BUDGETS_YAML

PHASES = ("data", "training", "evaluation", "serving", "preference")
# Phases a budgets.yaml written before them may leave out: absent, such a phase is budgeted at
# $0 (target and cap), so nothing billed can be spent on it until it is planned.
OPTIONAL_PHASES = ("preference",)
TOP_KEYS = ("currency", "phases", "prices", "reference", "human_review_usd_per_hour")
PHASE_KEYS = ("target", "cap", "warn")
PRICE_KEYS = ("input", "output", "cached_input", "batch_discount")
REFERENCE_KEYS = ("api_model", "gpu", "cloud", "region", "spot", "gpu_hourly_usd_fallback")
REFERENCE_DEFAULTS = {
    "api_model": "gpt-4o-mini",
    "gpu": "A100-80GB:8",
    "cloud": "aws",
    "region": "us-east-1",
    "spot": True,
    "gpu_hourly_usd_fallback": 8.65,
}


@dataclass(frozen=True)
class PhaseBudget:
    target: float
    cap: float
    warn: float  # as written: fraction of cap (<= 1) or amount (> 1)

    @property
    def warn_usd(self) -> float:
        return self.warn * self.cap if self.warn <= 1 else self.warn


@dataclass(frozen=True)
class PriceOverride:
    """USD per million tokens."""
    input: float
    output: float
    cached_input: float | None = None
    batch_discount: float = 0.5


class Reference(dict):
    """budgets.yaml `reference:` (a dict that also reads as attributes: budgets.reference.api_model)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class Budgets:
    currency: str
    phases: dict[str, PhaseBudget]
    prices: dict[str, PriceOverride] = field(default_factory=dict)
    reference: Reference = field(default_factory=lambda: Reference(REFERENCE_DEFAULTS))
    path: Path | None = None
    # What an hour of a person's blind review costs (07_review's cost of trust); 0 = unpaid.
    human_review_usd_per_hour: float = 0.0

    def phase(self, name: str) -> PhaseBudget:
        if name not in self.phases:
            raise UserError(f"unknown budget phase {name!r}: use one of {', '.join(PHASES)}")
        return self.phases[name]

    def warn_usd(self, name: str) -> float:
        return self.phase(name).warn_usd

    def check_spent(self, spent_by_phase: dict[str, float]) -> None:
        """A cap below what a run already spent is a mistake in the file, not a new limit."""
        for name, spent in spent_by_phase.items():
            if name in self.phases and spent > self.phases[name].cap + 1e-9:
                raise UserError(
                    f"{self._where()}phases.{name}.cap (${self.phases[name].cap:,.2f}) is below what this run "
                    f"already spent on {name} (${spent:,.2f}): raise the cap or start a new run directory"
                )

    def _where(self) -> str:
        return f"{self.path}: " if self.path else ""


def _did_you_mean(key: str, allowed) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    return f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"


def _check_keys(where: str, got: dict, allowed, path: Path) -> None:
    for k in got:
        if k not in allowed:
            raise UserError(f"{path}: unknown key {where}{k!r}: {_did_you_mean(k, allowed)} (fix the spelling or remove it)")


def _amount(value, key: str, path: Path, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{path}: {key} must be a number, got {value!r}: write a plain amount like 500")
    if value < 0:
        raise UserError(f"{path}: {key} is negative ({value}): amounts must be >= 0")
    return float(value)


def load_budgets(path: str | os.PathLike | None = None) -> Budgets:
    """Read and validate budgets.yaml; every problem is one line naming the key and the fix."""
    path = Path(path) if path else BUDGETS_YAML
    raw = _read_yaml(path)
    currency = raw.get("currency", "USD")
    if currency != "USD":
        raise UserError(f"{path}: currency {currency!r} is not supported: prices come in USD, set currency: USD")
    return Budgets(currency=currency, phases=_phases(raw.get("phases"), path), prices=_prices(raw.get("prices"), path),
                   reference=_reference(raw.get("reference"), path), path=path,
                   human_review_usd_per_hour=_amount(raw.get("human_review_usd_per_hour", 0),
                                                     "human_review_usd_per_hour", path))


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise UserError(
            f"budgets.yaml not found at {path}: copy {BUDGETS_YAML} there or pass budgets_path=<your file>"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}): save it as UTF-8 without a byte-order mark") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}: invalid YAML{line} ({problem}): fix the syntax there") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping with keys {', '.join(TOP_KEYS)}, got {type(raw).__name__}")
    _check_keys("", raw, TOP_KEYS, path)
    return raw


def _phases(phases_raw, path: Path) -> dict[str, PhaseBudget]:
    if not isinstance(phases_raw, dict) or not phases_raw:
        raise UserError(f"{path}: missing key 'phases': add phases: {{data: {{target: 500, cap: 600, warn: 0.8}}, ...}}")
    _check_keys("phases.", phases_raw, PHASES, path)
    phases: dict[str, PhaseBudget] = {}
    for name in PHASES:
        spec = phases_raw.get(name)
        if spec is None and name in OPTIONAL_PHASES:
            spec = {"target": 0, "cap": 0, "warn": 1.0}
        if spec is None:
            raise UserError(f"{path}: missing key phases.{name}: add {name}: {{target: ..., cap: ..., warn: 0.8}}")
        if not isinstance(spec, dict):
            raise UserError(f"{path}: phases.{name} must be a mapping like {{target: 100, cap: 150, warn: 0.8}}")
        _check_keys(f"phases.{name}.", spec, PHASE_KEYS, path)
        for k in ("target", "cap"):
            if k not in spec:
                raise UserError(f"{path}: missing key phases.{name}.{k}: add {k}: <amount in USD>")
        target = _amount(spec["target"], f"phases.{name}.target", path)
        cap = _amount(spec["cap"], f"phases.{name}.cap", path)
        warn = _amount(spec.get("warn", 0.8), f"phases.{name}.warn", path)
        if cap < target:
            raise UserError(f"{path}: phases.{name}.cap ({cap:g}) is below its target ({target:g}): "
                            f"raise the cap or lower the target")
        pb = PhaseBudget(target=target, cap=cap, warn=warn)
        if pb.warn_usd > cap:
            raise UserError(f"{path}: phases.{name}.warn ({warn:g}) is above the cap ({cap:g}): "
                            f"use a fraction like 0.8 or an amount below the cap")
        phases[name] = pb
    return phases


def _prices(prices_raw, path: Path) -> dict[str, PriceOverride]:
    prices_raw = prices_raw or {}
    if not isinstance(prices_raw, dict):
        raise UserError(f"{path}: prices must be a mapping of model -> {{input: ..., output: ...}} (USD per 1M tokens)")
    prices: dict[str, PriceOverride] = {}
    for model, spec in prices_raw.items():
        if not isinstance(spec, dict):
            raise UserError(f"{path}: prices.{model} must be a mapping like {{input: 0.15, output: 0.60}} (USD per 1M tokens)")
        _check_keys(f"prices.{model}.", spec, PRICE_KEYS, path)
        for k in ("input", "output"):
            if k not in spec:
                raise UserError(f"{path}: missing key prices.{model}.{k}: add {k}: <USD per 1M tokens>")
        disc = _amount(spec.get("batch_discount", 0.5), f"prices.{model}.batch_discount", path)
        if disc > 1:
            raise UserError(f"{path}: prices.{model}.batch_discount ({disc:g}) must be a fraction in [0, 1] (0.5 = half price)")
        prices[str(model)] = PriceOverride(
            input=_amount(spec["input"], f"prices.{model}.input", path),
            output=_amount(spec["output"], f"prices.{model}.output", path),
            cached_input=_amount(spec.get("cached_input"), f"prices.{model}.cached_input", path, allow_none=True),
            batch_discount=disc,
        )
    return prices


def _reference(ref_raw, path: Path) -> Reference:
    ref_raw = ref_raw or {}
    if not isinstance(ref_raw, dict):
        raise UserError(f"{path}: reference must be a mapping (api_model, gpu, cloud, region, spot)")
    if "train_tokens_per_s_per_gpu" in ref_raw:  # the one training speed lives in lib/data/throughput.yaml
        raise UserError(f"{path}: reference.train_tokens_per_s_per_gpu is gone: delete the line (training speed comes "
                        "from lib/data/throughput.yaml, the model the launch plan uses)")
    _check_keys("reference.", ref_raw, REFERENCE_KEYS, path)
    reference = Reference({**REFERENCE_DEFAULTS, **ref_raw})
    reference["gpu_hourly_usd_fallback"] = _amount(reference["gpu_hourly_usd_fallback"],
                                                   "reference.gpu_hourly_usd_fallback", path)
    if not isinstance(reference["spot"], bool):
        raise UserError(f"{path}: reference.spot must be true or false, got {reference['spot']!r}")
    if not isinstance(reference["gpu"], str) or ":" not in reference["gpu"]:
        raise UserError(f"{path}: reference.gpu must look like 'A100-80GB:8', got {reference['gpu']!r}")
    return reference
