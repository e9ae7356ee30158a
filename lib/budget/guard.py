"""BudgetGuard: reserve the worst case before paying, so a hard cap is never crossed.

    guard = BudgetGuard(budgets, ledger, phase="data")
    res = guard.reserve(worst_case_usd)     # BudgetExceeded if spent + reserved + this > cap
    text, resp = chat(...)                  # the call records its real cost in the ledger
    res.settle(actual_usd)                  # frees the reservation

Reservations are shared by every guard on the same ledger directory and phase in this
process (thread pools and asyncio tasks alike: `reserve` never awaits, and a lock makes the
check-and-add atomic). Between the ledger record and `settle` the money counts twice, which
errs on the safe side.

What to reserve for one chat call is decided here too, once for every phase and mode
(generation, judging, online and Batch API): `worst_case_usd` = the prompt's byte bound
(`lib.core.text.prompt_token_bound`) plus the completion limit, at the endpoint's price.
"""
from __future__ import annotations

import sys
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field

from lib.core.errors import BudgetExceeded, UserError
from lib.core.text import prompt_token_bound

from .config import Budgets
from .ledger import Ledger
from .prices import api_cost, check_priced


def worst_case_usd(price_model: str | None, requests, max_tokens: int, *, batch: bool = False, prices=None) -> float:
    """The most a set of chat calls can cost: each request is a list of messages answered with
    at most `max_tokens`. `price_model` None means the endpoint is not billed (see
    Endpoint.billed_as): $0."""
    if price_model is None:
        return 0.0
    prompt = sum(prompt_token_bound(messages) for messages in requests)
    usd, _ = api_cost(price_model, prompt, max_tokens * len(requests), batch=batch, prices=prices)
    return usd


def refuse_unpriced(price_model: str | None, *, guard: "BudgetGuard | None" = None, ledger=None) -> None:
    """Spend that cannot be priced cannot be capped: a billed endpoint (`price_model`, see
    Endpoint.billed_as) whose calls are metered (a guard or a ledger) is refused before the
    first call when no price is known for it."""
    if price_model is not None and (guard is not None or ledger is not None):
        check_priced(price_model, prices=guard.prices if guard is not None else None)


def hold(guard: "BudgetGuard | None", price_model: str | None, requests, max_tokens: int, *, batch: bool = False):
    """Reserve the worst case of `requests` while they run (`with hold(...):`); nothing to
    hold without a guard or for an endpoint that is not billed."""
    if guard is None or price_model is None:
        return nullcontext()
    return guard.reserve(worst_case_usd(price_model, requests, max_tokens, batch=batch, prices=guard.prices))

_LOCK = threading.Lock()
_OUTSTANDING: dict[tuple[str, str], dict[int, float]] = {}  # (ledger root, phase) -> {res id: usd}
_NEXT_ID = [0]


@dataclass
class Reservation:
    guard: "BudgetGuard"
    usd: float
    rid: int
    done: bool = field(default=False)

    def settle(self, actual_usd: float) -> float:
        """Free the reservation once the real cost is in the ledger; returns `actual_usd`."""
        if actual_usd > self.usd + 1e-9:
            print(f"budget warning: a {self.guard.phase} call cost ${actual_usd:.4f}, more than the "
                  f"${self.usd:.4f} reserved for it: raise the worst-case estimate", file=sys.stderr)
        self.release()
        return actual_usd

    def release(self) -> None:
        with _LOCK:
            if not self.done:
                _OUTSTANDING.get(self.guard._key, {}).pop(self.rid, None)
                self.done = True

    def __enter__(self) -> "Reservation":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class BudgetGuard:
    def __init__(self, budgets: Budgets, ledger: Ledger, phase: str):
        self.budgets, self.ledger, self.phase = budgets, ledger, phase
        self.cap = budgets.phase(phase).cap
        self._key = (str(ledger.root.resolve()), phase)

    @property
    def prices(self):
        """budgets.yaml's price overrides: what every reservation of this guard is priced with."""
        return self.budgets.prices

    def reserved(self) -> float:
        with _LOCK:
            return sum(_OUTSTANDING.get(self._key, {}).values())

    def remaining(self) -> float:
        """What may still be reserved: cap - spent - outstanding reservations."""
        return self.cap - self.ledger.spent(self.phase) - self.reserved()

    def reserve(self, usd: float) -> Reservation:
        if usd < 0:
            raise UserError(f"cannot reserve a negative amount (${usd}): pass the worst-case cost of the call")
        with _LOCK:  # spent is read inside the lock: a record landing between read and add would be missed
            spent = self.ledger.spent(self.phase)
            outstanding = _OUTSTANDING.setdefault(self._key, {})
            held = sum(outstanding.values())
            if spent + held + usd > self.cap + 1e-12:
                raise BudgetExceeded(
                    f"{self.phase} budget cap ${self.cap:,.2f} would be crossed (spent ${spent:,.4f} + reserved "
                    f"${held:,.4f} + this ${usd:,.4f}): raise phases.{self.phase}.cap in budgets.yaml or do less work"
                )
            _NEXT_ID[0] += 1
            rid = _NEXT_ID[0]
            outstanding[rid] = usd
        return Reservation(self, usd, rid)
