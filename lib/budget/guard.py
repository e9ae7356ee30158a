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
(generation, judging, answering, online and Batch API): `worst_case_usd` = the prompt's byte
bound (`lib.core.text.prompt_token_bound`) plus the completion limit, at the endpoint's price;
`hold` reserves it (the one way every phase does), and `refuse_unpriced` is the one check that
a billed endpoint has a price at all.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Sequence

from lib.core.errors import BudgetExceeded, UserError
from lib.core.text import prompt_token_bound

from .config import Budgets
from .ledger import Ledger
from .prices import api_cost, check_priced


def worst_case_usd(price_model: str | None, requests, max_tokens: int | Sequence[int], *, batch: bool = False,
                   prices=None) -> float:
    """The most a set of chat calls can cost: each request is a list of messages answered with
    at most `max_tokens` (one limit for all, or one per request), priced call by call.
    `price_model` None means the endpoint is not billed (see Endpoint.billed_as): $0."""
    if price_model is None:
        return 0.0
    limits = [max_tokens] * len(requests) if isinstance(max_tokens, int) else list(max_tokens)
    return sum(api_cost(price_model, prompt_token_bound(messages), limit, batch=batch, prices=prices)[0]
               for messages, limit in zip(requests, limits, strict=True))


def refuse_unpriced(price_model: str | None, prices=None) -> None:
    """Spend that cannot be priced cannot be capped: a billed endpoint (`price_model`, see
    Endpoint.billed_as; None = not billed) is refused in one UserError before its first call
    when no price is known for it (budgets.yaml's `prices`, then the price table). The one
    check, made wherever an endpoint is taken: the runner's preflight, RunContext.endpoint,
    generation, judging and answering."""
    if price_model is not None:
        check_priced(price_model, prices=prices)


class Unheld:
    """What `hold` returns when nothing is held: settles and releases like a Reservation."""

    usd = 0.0

    def settle(self, actual_usd: float) -> float:
        return actual_usd

    def release(self) -> None:
        pass

    def __enter__(self) -> "Unheld":
        return self

    def __exit__(self, *exc) -> None:
        pass


UNHELD = Unheld()


def hold(guard: "BudgetGuard | None", price_model: str | None, requests, max_tokens: int | Sequence[int], *,
         batch: bool = False) -> "Reservation | Unheld":
    """Hold the worst case of `requests` (`worst_case_usd`) against the cap until the calls are
    settled or released: the one way every phase reserves before it pays (generation online and
    in batches, judging online and in batches, answering).

    Why: a call's cost is known only once it returns, so a hard cap holds only if the most a
    call can cost counts as spent while it runs; concurrent calls (threads, asyncio tasks, a
    batch that runs for hours) then see each other's holds and never cross the cap together.
    BudgetExceeded when the worst case does not fit. Nothing is held without a guard or for an
    endpoint that is not billed. Use `with hold(...):` around one call, or keep the result and
    `settle(actual_usd)` (which warns when the worst case was too low) or `release()` it."""
    if guard is None or price_model is None:
        return UNHELD
    return guard.reserve(worst_case_usd(price_model, requests, max_tokens, batch=batch, prices=guard.prices))


def hold_committed(guard: "BudgetGuard | None", price_model: str | None, requests, max_tokens: int | Sequence[int],
                   *, batch: bool = True) -> "Reservation | Unheld":
    """`hold` for spend already committed -- a Batch API job submitted before a crash, waited for
    again: it runs whether or not its worst case still fits, so it is held when it fits (other
    spenders see it) and not at all when it does not."""
    try:
        return hold(guard, price_model, requests, max_tokens, batch=batch)
    except BudgetExceeded:
        return UNHELD

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
