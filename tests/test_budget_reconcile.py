"""Reconciling ledger intervals with sky.jobs.queue_v2 durations (recorded queue data)."""
from __future__ import annotations

import pytest

from lib.budget import Ledger
from lib.budget.reconcile import managed_job_id, reconcile

TASK = "sky-managed-2026-11-21-10-00-00-123456_shear-train-7b_42-0"

# What sky.jobs.queue_v2 returned for the job (fields as documented in its docstring).
QUEUE = [
    {"job_id": 42, "job_name": "shear-train-7b", "job_duration": 7200.0, "recovery_count": 1, "status": "SUCCEEDED",
     "submitted_at": 1_000_000.0, "end_at": 1_000_000.0 + 8000, "resources": "1x[A100-80GB:8]"},
    {"job_id": 43, "job_name": "other", "job_duration": 100.0, "recovery_count": 0, "status": "CANCELLED"},
]


def test_task_id_parsing():
    assert managed_job_id(TASK) == 42
    assert managed_job_id("sky-2026-11-21-10-00-00-123456_cluster_3") is None  # a cluster job, not managed
    assert managed_job_id(None) is None


def test_gap_is_recorded_once_and_idempotently(tmp_path):
    ledger = Ledger(tmp_path, writer="train-node0")
    common = dict(accelerator="A100-80GB", count=8, hourly_usd=8.65, cloud="aws", spot=True, task_id=TASK)
    ledger.record_compute("training", 0.0, 3000.0, recovery=0, **common)   # preempted after 3000 s
    ledger.record_compute("training", 3500.0, 7400.0, recovery=1, **common)  # recovered, 3900 s
    rows = reconcile(ledger, QUEUE)
    row = {r["job_id"]: r for r in rows}[42]
    assert row["ledger_seconds"] == pytest.approx(6900.0)
    assert row["gap_seconds"] == pytest.approx(300.0)
    assert row["adjustment_usd"] == pytest.approx(300 / 3600 * 8.65)
    assert {r["job_id"]: r for r in rows}[43]["intervals"] == 0
    total = Ledger(tmp_path, writer="r").spent("training")
    assert total == pytest.approx(7200 / 3600 * 8.65)  # now matches SkyPilot's duration
    reconcile(ledger, QUEUE)  # again: the adjustment replaces itself
    assert Ledger(tmp_path, writer="r2").spent("training") == pytest.approx(total)
    assert len(Ledger(tmp_path, writer="r3").records(kind="compute")) == 3
