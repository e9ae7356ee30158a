"""What training costs while it runs: the run's ledger and training cap, the hourly price of
this node, and the BudgetCallback that meters Trainer's steps into them.

    budget = open_budget(cfg.run_dir, cfg.budgets_path, rank=rank, world=world)  # first of all
    callback = budget_callback(budget, recipe.hardware, hourly_usd=-1, on_gpu=..., max_steps=...)

Opening comes first so that a bad budgets.yaml fails before any compute is spent. A node is
priced as the instance it is paid for (`billed_instance`), at the catalog price unless the
caller gives one; a laptop CPU costs $0.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lib.budget import Budgets, BudgetGuard, Ledger, gpu_hourly_usd, load_budgets
from lib.budget.plans import load_plans
from lib.train.callbacks import BudgetCallback


@dataclass
class TrainingBudget:
    budgets: Budgets
    ledger: Ledger  # this process's ledger file in <run_dir>/ledger
    guard: BudgetGuard  # the training phase's cap


def open_budget(run_dir: str, budgets_path: str = "", *, rank: int = 0, world: int = 1,
                phase: str = "training") -> TrainingBudget | None:
    """The run's budgets, ledger and guard of `phase` (DPO: "preference"); None without a run
    directory (nothing metered). With several processes each writes its own ledger file (train-<rank>)."""
    if not run_dir:
        return None
    budgets = load_budgets(budgets_path or None)
    ledger = Ledger(Path(run_dir) / "ledger", writer=f"train-{rank}" if world > 1 else "train", budgets=budgets)
    return TrainingBudget(budgets, ledger, BudgetGuard(budgets, ledger, phase=phase))


def billed_instance(hardware, *, on_gpu: bool, env: Mapping[str, str] | None = None) -> tuple[str, int] | None:
    """(accelerator, GPUs) this node is paid for, or None on a laptop CPU.

    On a SkyPilot node the node costs the instance the task asked for whatever torch sees, so
    its intervals are priced as the recipe's accelerator x SKYPILOT_NUM_GPUS_PER_NODE (x the
    recipe's GPUs per node when the node reports none, as the CPU rehearsal of an 8-GPU task
    does); off SkyPilot, the GPUs this node trains on."""
    env = os.environ if env is None else env
    if str(hardware.accelerator).lower() == "cpu":  # a laptop recipe
        return None
    if env.get("SKYPILOT_TASK_ID"):
        gpus = int(env.get("SKYPILOT_NUM_GPUS_PER_NODE") or 0) or max(int(hardware.gpus_per_node), 1)
        return hardware.accelerator, gpus
    if on_gpu:
        return hardware.accelerator, int(env.get("LOCAL_WORLD_SIZE", "1"))
    return None


def node_hourly_usd(budget: TrainingBudget, hardware, hourly_usd: float, *, billed) -> tuple[float, str]:
    """(price per node-hour, its source): `hourly_usd` when given (>= 0), else the catalog
    price of the billed instance, else $0 for a local CPU."""
    if hourly_usd >= 0:
        return hourly_usd, "given"
    if billed:
        return gpu_hourly_usd(budget.budgets.reference, f"{billed[0]}:{billed[1]}", spot=hardware.spot)
    return 0.0, "local CPU"


def budget_callback(budget: TrainingBudget, hardware, *, hourly_usd: float, on_gpu: bool, max_steps: int,
                    main: bool = True, env: Mapping[str, str] | None = None, purpose: str = "sft",
                    run_dir: str = "") -> BudgetCallback:
    """The callback that records this node's compute into the ledger and stops training (after
    a checkpoint) before the next step would cross the training cap; after 5% of the steps it
    projects the run's total from its own pace against the run's newest launch plan (if any)."""
    env = os.environ if env is None else env
    billed = billed_instance(hardware, on_gpu=on_gpu, env=env)  # None on a laptop CPU
    hourly, price_src = node_hourly_usd(budget, hardware, hourly_usd, billed=billed)
    local = int(env.get("LOCAL_WORLD_SIZE", "1"))
    nodes = int(env.get("WORLD_SIZE", "1")) // max(local, 1)
    callback = BudgetCallback(budget.ledger, budget.guard, hourly_usd=hourly,
                              accelerator=billed[0] if billed else "cpu", count=billed[1] if billed else local,
                              nodes=max(nodes, 1), spot=hardware.spot and bool(billed),
                              cloud="skypilot" if env.get("SKYPILOT_TASK_ID") else "local", max_steps=max_steps,
                              purpose=purpose, plan=(load_plans(run_dir) or [None])[-1] if run_dir else None)
    phase = budget.guard.phase
    if main:
        print(f"budget: {phase} at ${hourly:.2f}/h per node ({price_src}); cap "
              f"${budget.guard.cap:,.2f}, spent ${budget.ledger.spent(phase):,.4f}")
    return callback
