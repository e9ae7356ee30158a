"""The one place that talks to SkyPilot's client SDK (everything that would reach a cloud).

Tests run without a cloud by never calling these functions with a real API server; the rest
of the project (task parsing, pricing, estimates, the local runner) only reads YAML and the
local catalog. Each SDK call returns a request id; `wait` streams its logs and returns the
result.

    request_id = launch(task, managed=True)      # sky.jobs.launch: managed spot with recovery
    job_ids, handle = wait(request_id)
    jobs = managed_jobs()                        # sky.jobs.queue_v2 records (durations, recoveries)
"""
from __future__ import annotations

from typing import Any


def launch(task, *, managed: bool = True, cluster_name: str | None = None, down: bool = True) -> Any:
    """Start `task`: a managed job (spot recovery, `sky jobs launch`) or a cluster (`sky launch`)."""
    import sky

    if managed:
        return sky.jobs.launch(task, name=task.name)
    return sky.launch(task, cluster_name=cluster_name, down=down)


def wait(request_id) -> Any:
    import sky

    return sky.stream_and_get(request_id)


def managed_jobs(job_ids: list[int] | None = None, refresh: bool = False) -> list[dict]:
    """Managed-job records from `sky.jobs.queue_v2` as plain dicts."""
    import sky

    result = sky.get(sky.jobs.queue_v2(refresh=refresh, all_users=False, job_ids=job_ids))
    records = result[0] if isinstance(result, tuple) else result
    return [r if isinstance(r, dict) else (r.model_dump() if hasattr(r, "model_dump") else dict(r)) for r in records]
