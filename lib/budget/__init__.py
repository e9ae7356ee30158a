"""Budgets, prices, the spend ledger, the cap guard and the budget report.

    from lib.budget import load_budgets, Ledger, BudgetGuard, api_cost, write_report

See docs/architecture.md ("Budget API") for the contract every phase codes against.
"""
from .config import PHASES, Budgets, PhaseBudget, PriceOverride, load_budgets
from .gpu import gpu_hourly_usd, gpu_price, reference_gpu_hourly
from .guard import BudgetGuard, Reservation, hold, refuse_unpriced
from .ledger import ComputeMeter, Ledger
from .prices import api_cost, usage_tokens
from .report import write_report

__all__ = [
    "PHASES", "Budgets", "PhaseBudget", "PriceOverride", "load_budgets", "BudgetGuard", "Reservation", "hold",
    "refuse_unpriced", "ComputeMeter", "gpu_hourly_usd", "gpu_price", "reference_gpu_hourly", "Ledger", "api_cost",
    "usage_tokens", "write_report",
]
