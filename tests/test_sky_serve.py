"""sky/serve.yaml: priced by lib.launch.estimate against the serving budget, and rehearsed here.

The rehearsal runs the task's own `run` script through lib.launch.skyrun (as a SkyServe replica
would), against a bucket directory holding a trained tiny run. What differs from the cloud
is visible and passed through the task's environment only: SERVE_BACKEND=transformers (the
CPU stand-in for vLLM, which lib.serve.cloud refuses on a GPU node) and SERVE_MAX_SECONDS
(SkyServe would stop the replica with SIGTERM). The replica answers the official openai
client in the trained format, writes its hours into the run's ledger in phase `serving`,
and the budget report shows that phase.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from launch_driver import launch_many
from sky_catalog import seeded_home

from lib.core.client import Endpoint, chat, make_client
from lib.core.server import free_port
from lib.launch.skyrun import kill_node, start_nodes

REPO = Path(__file__).resolve().parent.parent
TASK = REPO / "sky" / "serve.yaml"
# Single-GPU rows for the serving accelerators (seeded test prices, USD/h: on-demand, spot).
ROWS = """\
g6.xlarge,L4,1,4,16,"{'Gpus': [{'Name': 'L4', 'Manufacturer': 'NVIDIA', 'Count': 1, 'MemoryInfo': {'SizeInMiB': 23034}}], 'TotalGpuMemoryInMiB': 23034}",0.8048,0.2500,us-east-1,us-east-1a,x86_64
g5.xlarge,A10G,1,4,16,"{'Gpus': [{'Name': 'A10G', 'Manufacturer': 'NVIDIA', 'Count': 1, 'MemoryInfo': {'SizeInMiB': 24576}}], 'TotalGpuMemoryInMiB': 24576}",1.006,0.3500,us-east-1,us-east-1a,x86_64
"""
L4_SPOT = 0.25


@pytest.fixture(scope="module")
def sky_home(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("skyhome")
    env = seeded_home(home)
    with open(home / ".sky" / "catalogs" / "v8" / "aws" / "vms.csv", "a") as f:
        f.write(ROWS)
    return env


@pytest.fixture(scope="module")
def priced(sky_home) -> dict[str, dict]:
    """The launcher's dry runs of the serve task, in one process (tests/launch_driver.py)."""
    return launch_many({"day": [str(TASK), "--dry-run"], "beyond": [str(TASK), "--dry-run", "--env", "EST_HOURS=1000"]},
                       sky_home)


def test_serve_task_is_priced_against_the_serving_budget(priced):
    r = priced["day"]
    assert r["code"] == 0, r["stderr"]
    # 24 h (EST_HOURS) x $0.25/h (the cheapest allowed GPU, a spot L4) = $6.00 of the $50 serving cap
    assert "g6.xlarge" in r["stdout"] and "EST_HOURS=24" in r["stdout"]
    assert f"estimate:  ${24 * L4_SPOT:,.2f}" in r["stdout"]
    assert re.search(r"budget:\s+serving: target \$20\.00, cap \$50\.00", r["stdout"])


def test_a_day_of_serving_beyond_the_cap_is_refused(priced):
    r = priced["beyond"]
    assert r["code"] == 2 and "exceeds the remaining $50.00" in r["stderr"] and r["stderr"].count("\n") == 1


def test_replica_rehearsal_serves_the_trained_run_and_meters_serving(tmp_path):
    from transformers import AutoTokenizer

    from lib.budget import Ledger, load_budgets, write_report
    from lib.serve.template import encode
    from tests.test_serve import _train

    bucket = tmp_path / "bucket"
    run = bucket / "r1"
    _train(run, "tiny")
    port = free_port()
    env = {"RUN_ID": "r1", "SERVE_BACKEND": "transformers", "SERVE_MAX_SECONDS": "20", "VLLM_BIN": "/nonexistent"}
    # the run script binds the port the service's resources name; here a free one is passed through the same flag
    cfg_run = TASK.read_text().replace("--port 8000", f"--port {port}")
    task = tmp_path / "serve.yaml"
    task.write_text(cfg_run)
    logs = tmp_path / "logs"
    logs.mkdir()
    (proc,) = start_nodes(task, root=bucket, env=env, log_dir=logs, task_id="sky-serve-local_shear-serve_1-0")
    try:
        log = logs / "node0.log"
        deadline = time.time() + 300
        while time.time() < deadline and "ready at" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None, log.read_text()
            time.sleep(1)
        text = log.read_text()
        assert "ready at" in text, text
        base_url, model = re.search(r"ready at (\S+) model=(\S+)", text).groups()
        ep = Endpoint(base_url=base_url, model=model)
        messages = [{"role": "user", "content": "Count to three."}]
        _, resp = chat(make_client(ep), ep, messages, max_tokens=4, temperature=0)
        tok = AutoTokenizer.from_pretrained(run / "model")
        assert resp.usage.prompt_tokens == len(encode(tok, "alpaca", messages))  # the trained format
        assert proc.wait(timeout=180) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            kill_node(proc)
    assert "replica stopped: max_seconds" in log.read_text()
    serving = Ledger(run / "ledger", writer="check").records(kind="compute", phase="serving")
    assert len(serving) == 1 and not serving[0]["open"] and serving[0]["hours"] >= 20 / 3600
    assert serving[0]["usd"] == 0.0 and serving[0]["accelerator"] == "cpu"  # a CPU replica costs $0
    md, _ = write_report(run, load_budgets())
    assert re.search(r"\|\s*serving\s*\|", md.read_text())
