"""The runner: bad input stops before anything is written; the tiny loop runs end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(args, tmp_path, env_extra=None, timeout=120):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["SHEAR_RUNS"] = str(tmp_path / "runs")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "lib.pipeline", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, pattern):
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines and lines[-1].startswith("error: "), proc.stderr
    assert pattern in lines[-1], lines[-1]


def write_profile(tmp_path, teacher):
    p = tmp_path / "p.yaml"
    p.write_text(json.dumps({"description": "t", "teacher": teacher, "notebooks": {"05_budget": {}}}))
    return str(p)


def test_missing_budgets_file(tmp_path):
    proc = run_cli(["run", "--profile", "tiny", "--budgets", str(tmp_path / "nope.yaml")], tmp_path)
    assert_one_line_error(proc, "nope.yaml")
    assert not (tmp_path / "runs").exists()


def test_invalid_budgets_file(tmp_path):
    bad = tmp_path / "budgets.yaml"
    bad.write_text("phases: [unclosed\n")
    proc = run_cli(["run", "--profile", "tiny", "--budgets", str(bad)], tmp_path)
    assert_one_line_error(proc, "budgets.yaml")
    assert not (tmp_path / "runs").exists()


def test_unreachable_teacher(tmp_path):
    prof = write_profile(tmp_path, {"base_url": "http://127.0.0.1:9/v1", "model": "m"})
    proc = run_cli(["run", "--profile", prof], tmp_path)
    assert_one_line_error(proc, "cannot reach the teacher")
    assert not (tmp_path / "runs").exists()


def test_openai_endpoint_without_key(tmp_path):
    prof = write_profile(tmp_path, {"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini"})
    proc = run_cli(["run", "--profile", prof], tmp_path)
    assert_one_line_error(proc, "export OPENAI_API_KEY")
    assert not (tmp_path / "runs").exists()


def test_unknown_notebook_parameter(tmp_path):
    proc = run_cli(["run", "--profile", "tiny", "--set", "03_train.max_stepz=3"], tmp_path)
    assert_one_line_error(proc, "max_stepz")


def test_unknown_profile(tmp_path):
    proc = run_cli(["run", "--profile", "nosuch"], tmp_path)
    assert_one_line_error(proc, "no profile 'nosuch'")


def test_key_parameter_is_refused(tmp_path):
    proc = run_cli(["run", "--profile", "tiny", "--set", "01_generate.api_key=sk-abc"], tmp_path)
    assert_one_line_error(proc, "api_key")


def test_tiny_loop_end_to_end_leaks_no_key(tmp_path):
    """The whole loop through papermill on the embedded model; the key is in the env only."""
    canary = "sk-canary-" + os.urandom(12).hex()
    proc = run_cli(["run", "--profile", "tiny", "--run-id", "e2e"], tmp_path,
                   env_extra={"OPENAI_API_KEY": canary}, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "runs" / "e2e"
    for nb in ("01_generate", "02_clean", "03_train", "04_evaluate", "05_budget"):
        assert (run / f"{nb}.ipynb").exists(), nb
    state = json.loads((run / "pipeline.json").read_text())
    assert all(p["status"] == "done" for p in state["phases"].values())
    assert sum(1 for _ in open(run / "data" / "generated.jsonl")) > 0
    assert sum(1 for _ in open(run / "data" / "clean.jsonl")) > 0
    assert (run / "model" / "config.json").exists()
    metrics = json.loads((run / "train" / "metrics.json").read_text())
    assert "base_heldout_loss" in metrics and "tuned_heldout_loss" in metrics
    assert (run / "eval" / "results.json").exists()
    assert (run / "report" / "budget.md").exists() and (run / "report" / "budget.png").exists()
    assert list((run / "ledger").glob("*.jsonl"))
    leaked = [str(p) for p in run.rglob("*") if p.is_file() and canary.encode() in p.read_bytes()]
    assert not leaked, f"API key found in {leaked}"
    assert canary not in proc.stdout + proc.stderr

    # resume after everything is done: nothing re-runs, nothing changes
    before = (run / "data" / "clean.jsonl").read_bytes()
    again = run_cli(["run", "--profile", "tiny", "--resume", "e2e"], tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("skipped") == 5
    assert (run / "data" / "clean.jsonl").read_bytes() == before
