"""BudgetGuard: the cap is never crossed, from threads or asyncio tasks."""
from __future__ import annotations

import asyncio
import threading

import pytest

from lib.budget import BudgetGuard, Ledger, load_budgets
from lib.core.client import Endpoint
from lib.core.errors import BudgetExceeded, UserError

REMOTE = Endpoint(base_url="https://api.openai.com/v1", model="gpt-4o-mini")


@pytest.fixture
def budgets(tmp_path):
    path = tmp_path / "budgets.yaml"
    path.write_text("""\
phases:
  data: {target: 1.0, cap: 1.0, warn: 0.5}
  training: {target: 1, cap: 2}
  evaluation: {target: 1, cap: 2}
  serving: {target: 1, cap: 2}
prices: {fixed: {input: 1, output: 0}}   # $1 per million prompt tokens: easy arithmetic
""")
    return load_budgets(path)


FIXED = Endpoint(base_url="https://llm.example.com/v1", model="fixed")


def test_reserve_settle_release_and_refusal(tmp_path, budgets):
    ledger = Ledger(tmp_path, writer="gen", budgets=budgets)
    guard = BudgetGuard(budgets, ledger, "data")
    r1 = guard.reserve(0.25)
    r2 = guard.reserve(0.5)
    assert guard.remaining() == pytest.approx(0.25)
    with pytest.raises(BudgetExceeded) as e:
        guard.reserve(0.3)
    msg = str(e.value)
    assert "data budget cap $1.00 would be crossed" in msg and "phases.data.cap" in msg and "\n" not in msg
    ledger.record_compute("data", 0, 3600, hourly_usd=0.2)  # the first call's real cost lands in the ledger
    r1.settle(0.2)
    assert guard.remaining() == pytest.approx(1.0 - 0.2 - 0.5)
    r2.release()
    r2.release()  # idempotent
    assert guard.remaining() == pytest.approx(0.8)
    with guard.reserve(0.8):
        with pytest.raises(BudgetExceeded):
            guard.reserve(0.01)
    assert guard.remaining() == pytest.approx(0.8)
    with pytest.raises(UserError, match="negative"):
        guard.reserve(-1)


def test_guards_on_the_same_ledger_share_reservations(tmp_path, budgets):
    a = BudgetGuard(budgets, Ledger(tmp_path, writer="a"), "data")
    b = BudgetGuard(budgets, Ledger(tmp_path, writer="b"), "data")
    a.reserve(0.7)
    with pytest.raises(BudgetExceeded):
        b.reserve(0.4)
    other_phase = BudgetGuard(budgets, Ledger(tmp_path, writer="c"), "training")
    other_phase.reserve(1.5)  # phases have their own caps


def _spend_loop(guard, ledger, ep, n, refused):
    for _ in range(n):
        try:
            res = guard.reserve(0.01)  # worst case of one call: 10,000 prompt tokens at $1 per million
        except BudgetExceeded:
            refused.append(1)
            continue
        ledger.record_api("data", ep, {"prompt_tokens": 10_000, "completion_tokens": 0})  # $0.01
        res.settle(0.01)


def test_cap_never_crossed_by_many_threads(tmp_path, budgets, capsys):
    ledger = Ledger(tmp_path, writer="gen", budgets=budgets)
    guard = BudgetGuard(budgets, ledger, "data")
    refused: list[int] = []
    threads = [threading.Thread(target=_spend_loop, args=(guard, ledger, FIXED, 40, refused)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spent = Ledger(tmp_path, writer="reader").spent("data")
    assert spent <= 1.0 + 1e-9
    assert spent == pytest.approx(1.0)  # it did use the whole budget
    assert len(refused) == 6 * 40 - 100
    assert capsys.readouterr().err.count("budget warning: data has spent") == 1  # warn level 0.5, printed once


def test_cap_never_crossed_by_asyncio_tasks(tmp_path, budgets):
    ledger = Ledger(tmp_path, writer="gen", budgets=budgets)
    guard = BudgetGuard(budgets, ledger, "data")
    done = []

    async def call(i):
        try:
            res = guard.reserve(0.03)
        except BudgetExceeded:
            return
        await asyncio.sleep(0.001 * (i % 5))  # calls overlap while their reservations are held
        ledger.record_api("data", FIXED, {"prompt_tokens": 30_000, "completion_tokens": 0})
        res.settle(0.03)
        done.append(i)

    async def main():
        await asyncio.gather(*(call(i) for i in range(100)))

    asyncio.run(main())
    assert len(done) == 33
    assert ledger.spent("data") == pytest.approx(0.99)


def test_hold_is_the_one_reservation_of_a_worst_case(tmp_path, budgets):
    """lib.budget.guard.hold: what generation, judging and answering reserve before they pay."""
    from lib.budget.guard import UNHELD, hold, hold_committed, worst_case_usd
    from lib.core.text import prompt_token_bound

    guard = BudgetGuard(budgets, Ledger(tmp_path, writer="gen", budgets=budgets), "data")
    one = [{"role": "user", "content": "x" * 99_984}]  # + 16 + 4 template tokens = 100,004 tokens, $0.100004
    assert prompt_token_bound(one) == 100_004
    assert hold(None, "fixed", [one], 10) is UNHELD and hold(guard, None, [one], 10) is UNHELD  # nothing to hold
    assert worst_case_usd("fixed", [one, one], [10, 20], prices=budgets.prices) == pytest.approx(0.200008)
    with hold(guard, "fixed", [one, one], 10) as held:
        assert held.usd == pytest.approx(0.200008) and guard.remaining() == pytest.approx(1 - 0.200008)
    assert guard.remaining() == pytest.approx(1.0)
    big = [one] * 11  # $1.10: over the $1 cap
    with pytest.raises(BudgetExceeded):
        hold(guard, "fixed", big, 0)
    # A batch already submitted runs anyway: held (at batch prices) when it fits, else not at all.
    assert hold_committed(guard, "fixed", big * 2, 0) is UNHELD
    at_batch_price = worst_case_usd("fixed", big, 0, batch=True, prices=budgets.prices)
    assert at_batch_price < 1.0 and hold_committed(guard, "fixed", big, 0).usd == pytest.approx(at_batch_price)


def test_an_unpriced_billed_endpoint_is_refused_before_any_call(budgets):
    from lib.budget.guard import refuse_unpriced

    refuse_unpriced(None)  # not billed: nothing to price
    refuse_unpriced("fixed", budgets.prices)  # priced by budgets.yaml
    refuse_unpriced("gpt-4o-mini")  # priced by the price table
    with pytest.raises(UserError):
        refuse_unpriced("house-model-v9", budgets.prices)
