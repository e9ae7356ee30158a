"""Reconcile the ledger's GPU intervals with SkyPilot's managed-job durations.

The ledger meters what our code saw (heartbeats, so a preemption loses at most one); SkyPilot
knows how long each managed job ran (`sky.jobs.queue_v2`: `job_duration`, `recovery_count`).
After a run, any time SkyPilot counted and the ledger did not (a lost heartbeat, setup before
the meter started) is added as ONE adjustment record per job, with a fixed id, so running
the reconciliation again replaces it instead of adding to it.

    from lib.launch import sky_backend
    rows = reconcile(ledger, sky_backend.managed_jobs())
"""
from __future__ import annotations

import re

from .ledger import Ledger

# SKYPILOT_TASK_ID of a managed job: <timestamp>_<job name>_<job id>-<task index>
_MANAGED = re.compile(r"_(\d+)-(\d+)$")


def managed_job_id(task_id: str | None) -> int | None:
    m = _MANAGED.search(task_id or "")
    return int(m.group(1)) if m else None


def reconcile(ledger: Ledger, jobs: list[dict], *, tolerance_s: float = 60.0, record: bool = True) -> list[dict]:
    """One row per managed job: SkyPilot's seconds, the ledger's, and the adjustment recorded."""
    intervals: dict[int, list[dict]] = {}
    for r in ledger.records(kind="compute"):
        if r.get("purpose") == "reconcile":
            continue
        job_id = managed_job_id(r.get("task_id"))
        if job_id is not None:
            intervals.setdefault(job_id, []).append(r)
    rows = []
    for job in jobs:
        job_id = int(job["job_id"])
        sky_s = float(job.get("job_duration") or 0.0)
        mine = sorted(intervals.get(job_id, []), key=lambda r: r["end"])
        ledger_s = sum(float(r["hours"]) for r in mine) * 3600.0
        gap = sky_s - ledger_s
        row = {"job_id": job_id, "job_name": job.get("job_name"), "sky_seconds": sky_s, "ledger_seconds": ledger_s,
               "gap_seconds": gap, "recovery_count": job.get("recovery_count"), "intervals": len(mine),
               "adjustment_usd": 0.0}
        if mine and gap > tolerance_s and record:
            last = mine[-1]
            rec = ledger.record_compute(
                last["phase"], last["end"], last["end"] + gap, accelerator=last["accelerator"], count=last["count"],
                hourly_usd=last["hourly_usd"], nodes=last["nodes"], cloud=last["cloud"], region=last.get("region"),
                instance=last.get("instance"), spot=last["spot"], task_id=last["task_id"],
                recovery=job.get("recovery_count"), purpose="reconcile", record_id=f"reconcile:{job_id}",
                price_source=f"sky.jobs.queue_v2 job_duration - ledger intervals; {last.get('price_source', '')}")
            row["adjustment_usd"] = rec["usd"]
        rows.append(row)
    return rows
