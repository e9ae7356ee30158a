"""Trainer callbacks: checkpoint markers, throughput/MFU, budget guard, fault injection."""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

from transformers import TrainerCallback  # noqa: TID253 -- a trainer module: its classes subclass Trainer's

from lib.budget.throughput import flops_per_token
from lib.core.errors import BudgetExceeded
from lib.core.files import mark_complete
from lib.train.dist import barrier


def _is_main(state) -> bool:
    return state.is_world_process_zero


class CompleteMarkerCallback(TrainerCallback):
    """After Trainer wrote checkpoint-<step> (model, optimizer, scheduler, RNG, state), wait
    for every rank, then rank 0 fsyncs and writes `.complete`."""

    def on_save(self, args, state, control, **kw):
        barrier()
        if _is_main(state):
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                mark_complete(ckpt, json.dumps({"step": state.global_step, "time": time.time()}) + "\n")
        barrier()
        return control


class ThroughputCallback(TrainerCallback):
    """Per logging interval: tokens/s (all ranks), useful-token share, MFU, label tokens; and every
    checkpoint save's seconds and bytes (its write rate, for the plan's checkpoint line).

    MFU = useful tokens x `flops_per_token` (lib/budget/throughput.py: the plan's one FLOP rule, at the
    interval's real attention span) / seconds / peak. A save's seconds are left out of the interval
    it falls in: the pace is the training steps', and the plan prices saves as their own line."""

    def __init__(self, meter, *, shape, method: str, checkpointing: bool, peak_flops: float | None,
                 peak_source: str = "", world_size: int = 1):
        self.meter, self.shape, self.method, self.checkpointing = meter, shape, method, checkpointing
        self.peak, self.peak_source, self.world = peak_flops, peak_source, world_size
        self.accelerator = ""
        self.rows: list[dict] = []
        self.saves: list[dict] = []
        self._last = None
        self._mark = None  # when the hooks before a save ended (a save follows them)
        self._paused = 0.0  # save seconds inside the current interval

    def on_train_begin(self, args, state, control, **kw):
        # Before the first batch is collated (Trainer fetches a step's batches before on_step_begin).
        self._last = (time.perf_counter(), self.meter.snapshot())

    def on_step_end(self, args, state, control, **kw):
        self._mark = time.perf_counter()

    def on_save(self, args, state, control, **kw):
        if self._mark is None:
            return
        seconds = time.perf_counter() - self._mark
        self._paused += seconds
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        size = sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file()) if ckpt.is_dir() else None
        self.saves.append({"step": state.global_step, "seconds": seconds, "bytes": size if _is_main(state) else None})

    def on_log(self, args, state, control, logs=None, **kw):
        if self._last is None or logs is None or "loss" not in logs:
            return
        t0, (p0, u0, l0, s0) = self._last
        now, (p1, u1, l1, s1) = time.perf_counter(), self.meter.snapshot()
        dt = max(now - t0 - self._paused, 1e-9)
        useful, positions = (u1 - u0), (p1 - p0)
        span = (s1 - s0) / useful if useful else 0.0  # positions a real token attends to, on average
        flops = flops_per_token(self.shape, self.method, span, checkpointing=self.checkpointing).model * useful
        row = {
            "step": state.global_step, "loss": logs["loss"], "seconds": dt,
            "tokens_per_s": positions / dt * self.world, "useful_tokens_per_s": useful / dt * self.world,
            "useful_share": useful / positions if positions else None, "label_tokens": (l1 - l0) * self.world,
            "attn_span": span, "mfu": (flops / dt / self.peak) if self.peak else None,
        }
        self.rows.append(row)
        logs.update({k: row[k] for k in ("useful_tokens_per_s", "useful_share", "mfu") if row[k] is not None})
        self._last, self._paused = (now, (p1, u1, l1, s1)), 0.0
        self._mark = time.perf_counter()  # a save after this log starts here

    def checkpoint_write(self) -> dict | None:
        """Bytes, seconds and bytes/s of this run's checkpoint saves (rank 0's view of the checkpoint directory)."""
        rows = [r for r in self.saves if r["bytes"] and r["seconds"] > 0]
        if not rows:
            return None
        size, secs = sum(r["bytes"] for r in rows), sum(r["seconds"] for r in rows)
        return {"saves": len(rows), "bytes": size, "seconds": secs, "bytes_per_s": size / secs}


class BudgetCallback(TrainerCallback):
    """Meters training time into the ledger and stops (after a checkpoint) before the
    training cap would be crossed.

    Compute intervals go to the ledger at every save, every `record_every_s` and at the end
    (phase "training", `hourly_usd` per node as the ledger wants it). After each step the
    cost of the next `margin_steps` steps plus a checkpoint save (at the slowest recent
    pace) is test-reserved from the guard; if that would cross the cap, the run saves now
    and stops, so the money already spent is kept as a resumable checkpoint.
    """

    def __init__(self, ledger, guard, *, hourly_usd: float, accelerator: str, count: int, nodes: int = 1,
                 margin_steps: int = 1, record_every_s: float = 120.0, spot: bool = False, cloud: str = "local",
                 max_steps: int | None = None, purpose: str = "sft", plan: dict | None = None):
        self.ledger, self.guard, self.hourly, self.nodes = ledger, guard, float(hourly_usd), nodes
        self.phase, self.purpose = guard.phase, purpose  # the guard's phase: "training", or "preference" for DPO
        self.compute = dict(accelerator=accelerator, count=count, nodes=nodes, spot=spot, cloud=cloud)
        self.margin_steps, self.record_every_s = margin_steps, record_every_s
        self.interval_start: float | None = None
        self.step_times: list[float] = []
        self.save_seconds = 0.0
        self._step_t0 = None
        self._last_end = None
        self._save_t0 = None
        self.stopped_for_budget = False
        self.projection: dict = {}
        self.max_steps = max_steps
        self.plan = plan  # the run's launch plan (lib/launch/plan.py), for the interval the pace falls in
        self.pace: dict = {}  # the projection at 5% of the steps (at least 3): `pace_projection`
        self.pure_steps: list[float] = []  # step times without the saves between them
        self._saved_since = 0.0
        self.save_total, self.saves = 0.0, 0
        self.loop_t0 = self.loop_seconds = None
        self._start_step, self._spent_before = 0, 0.0

    @property
    def usd_per_second(self) -> float:
        return self.hourly * self.nodes / 3600.0

    def _flush(self, state, open_: bool = False) -> None:
        # Each node records its own interval (its first process, in its own ledger file): the
        # ledger then shows every node that was paid for, and a node's time is never counted twice.
        if not state.is_local_process_zero or self.interval_start is None:
            return
        now = time.time()
        self.ledger.record_compute(self.phase, self.interval_start, now, hourly_usd=self.hourly,
                                   purpose=self.purpose, **{**self.compute, "nodes": 1})
        self.interval_start = now if open_ else None

    def pending_usd(self) -> float:
        return 0.0 if self.interval_start is None else (time.time() - self.interval_start) * self.usd_per_second

    def on_train_begin(self, args, state, control, **kw):
        self.interval_start = time.time()
        self.loop_t0 = time.perf_counter()
        self.max_steps = state.max_steps or self.max_steps
        self._start_step, self._spent_before = state.global_step, self.ledger.spent(self.phase)

    def on_step_begin(self, args, state, control, **kw):
        self._step_t0 = time.perf_counter()

    def _next_cost(self) -> float:
        """Unrecorded time so far + one more step + one checkpoint save, at the slowest recent pace."""
        step_s = max(self.step_times[-5:])
        save_s = max(self.save_seconds, step_s) * 1.5  # a save not yet measured is priced above a step
        # Stopping writes two saves (the checkpoint and the published model); 25% slack covers
        # the clock's jitter between what was measured and what the next step will take.
        return self.pending_usd() + (self.margin_steps * step_s + 2 * save_s) * 1.25 * self.usd_per_second

    def on_step_end(self, args, state, control, **kw):
        # Wall time from the previous step's end: data loading, logging and callbacks are paid too.
        now = time.perf_counter()
        self.step_times.append(now - (self._last_end if self._last_end is not None else self._step_t0))
        self.pure_steps.append(max(self.step_times[-1] - self._saved_since, 0.0))
        self._saved_since = 0.0
        self._last_end = now
        if not self.pace and state.global_step - self._start_step >= pace_step(self.max_steps or 0):
            self._project(args, state)
        step_s = max(self.step_times[-5:])
        left = max((self.max_steps or state.global_step) - state.global_step, 0)
        self.projection = {"step_seconds": step_s, "steps_left": left,
                           "projected_usd": self.ledger.spent("training") + self.pending_usd()
                           + left * step_s * self.usd_per_second}
        if self.usd_per_second > 0 and left > 0 and not self.stopped_for_budget:
            # Checked after a step, so that stopping costs only the save: the previous check
            # already made room for this step and that save.
            if not self._fits(self._next_cost()):
                self.stopped_for_budget = True
                if _is_main(state):
                    print(f"budget: stopping after step {state.global_step} with a checkpoint: the next step "
                          f"and a save would cross the training cap (${self.guard.cap:,.2f})", file=sys.stderr)
        if self.stopped_for_budget:
            control.should_training_stop = True
            control.should_save = True
        if self.interval_start is not None and time.time() - self.interval_start > self.record_every_s:
            self._flush(state, open_=True)
        self._save_t0 = time.perf_counter()  # a save, if any, happens right after this hook
        return control

    def _fits(self, usd: float) -> bool:
        """The same answer on every rank (else FSDP collectives would hang): rank 0 decides."""
        try:
            self.guard.reserve(usd).release()
            ok = True
        except BudgetExceeded:
            ok = False
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            import torch

            dev = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
            flag = torch.tensor([1.0 if ok else 0.0], device=dev)
            dist.broadcast(flag, src=0)
            ok = bool(flag.item())
        return ok

    def on_save(self, args, state, control, **kw):
        if self._save_t0 is not None:
            took = time.perf_counter() - self._save_t0
            self.save_seconds = max(self.save_seconds, took)
            self._saved_since += took
            self.save_total, self.saves = self.save_total + took, self.saves + 1
        self._flush(state, open_=True)

    def _project(self, args, state) -> None:
        """Total training-loop time and cost from this run's own pace (the median step since the first, the
        mean save), printed and recorded in the ledger with the plan interval it falls in."""
        done = state.global_step - self._start_step
        left = max((self.max_steps or 0) - state.global_step, 0)
        steps = self.pure_steps[1:] or self.pure_steps
        pace = sorted(steps)[len(steps) // 2]
        every = int(getattr(args, "save_steps", 0) or 0)
        saves_left = (self.max_steps // every - state.global_step // every) if every else 0
        save_s, save_from = (self.save_total / self.saves, "measured") if self.saves else planned_save(self.plan)
        elapsed = time.perf_counter() - self.loop_t0
        seconds = elapsed + left * pace + saves_left * save_s
        self.pace = {"step": state.global_step, "steps": self.max_steps, "elapsed_s": elapsed, "step_s": pace,
                     "save_s": save_s, "save_s_from": save_from, "saves_left": saves_left, "projected_s": seconds,
                     "projected_usd": self._spent_before + seconds * self.usd_per_second,
                     **plan_interval(self.plan, seconds)}
        if _is_main(state):
            print(f"pace: after {done} of {self.max_steps} steps: training loop ~{seconds:,.0f} s = {elapsed:,.0f} s "
                  f"so far + {left} steps x {pace:.2f} s + {saves_left} saves x {save_s:.2f} s ({save_from}), "
                  f"${self.pace['projected_usd']:,.2f} for {self.phase}; {self.pace['plan_verdict']}", flush=True)
        if state.is_local_process_zero:
            self.ledger.append({"id": f"projection:{self.ledger.writer}:{self.interval_start}", "kind": "projection",
                                "phase": self.phase, "usd": 0.0, **self.pace})

    def on_train_end(self, args, state, control, **kw):
        if self.loop_t0 is not None:
            self.loop_seconds = time.perf_counter() - self.loop_t0
        self._flush(state, open_=True)  # the final save is still to come: `close` meters it

    def close(self, state) -> None:
        """Record the last interval (final model gather + save) once training code is done."""
        self._flush(state)


def pace_step(max_steps: int) -> int:
    """The step after which a run projects its own total: 5% of the steps, at least 3."""
    return max(3, math.ceil(0.05 * max_steps))


def planned_save(plan: dict | None) -> tuple[float, str]:
    """(seconds, "plan") of one write by the plan's checkpoint line (lib/launch/overheads.py: its saves and
    the published model), before the run has measured a save of its own; (0, "none yet") without one."""
    line = next((o for o in (plan or {}).get("overheads") or [] if o.get("name") == "checkpoint writes"), None)
    if line is None or not line.get("count"):
        return 0.0, "none yet"
    return line["hours"] * 3600 / line["count"], "plan"


def plan_interval(plan: dict | None, seconds: float) -> dict:
    """Where `seconds` of training loop fall in the plan's interval (compute + checkpoint writes, low..high)."""
    if not plan or not plan.get("compute_hours_interval"):
        return {"plan_low_s": None, "plan_high_s": None, "plan_verdict": "no plan in the run to compare with"}
    saves = sum(o.get("hours", 0.0) for o in plan.get("overheads") or [] if o.get("name") == "checkpoint writes")
    lo, hi = ((plan["compute_hours_interval"][k] + saves) * 3600 for k in ("low", "high"))
    where = "inside" if lo <= seconds <= hi else ("below" if seconds < lo else "above")
    return {"plan_low_s": lo, "plan_high_s": hi,
            "plan_verdict": f"{where} the plan's {lo:,.0f}-{hi:,.0f} s (compute + checkpoint writes, {plan.get('task')})"}


class KillAtStepCallback(TrainerCallback):
    """Fault injection for the preemption test: SIGKILL this process at the end of a step,
    exactly like a spot reclaim (no cleanup, no atexit). Enabled only by SHEAR_FAULT_KILL_AT_STEP."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step:
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
