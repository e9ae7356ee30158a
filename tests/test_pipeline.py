"""The runner: bad input stops before anything is written; the tiny loop runs end to end."""
import json
import os
import re
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


def test_tiny_loop_end_to_end_leaks_no_key(tiny_loop):
    """The whole loop on the embedded model, the default suite's one (tests/tiny_loop.py: every
    notebook once, through papermill from notebooks/); the key is in the env only."""
    run, canary = tiny_loop.run, tiny_loop.canary
    for nb in ("01_generate", "02_clean", "03_train", "04_evaluate", "05_budget"):
        assert tiny_loop.executed(nb).exists(), nb
    assert tiny_loop.teacher_records, "the teacher's request kept no record"  # before the top-up
    assert sum(1 for _ in open(run / "data" / "clean.jsonl")) > 0
    assert (run / "model" / "config.json").exists()
    metrics = json.loads((run / "train" / "metrics.json").read_text())
    assert "base_heldout_loss" in metrics and "tuned_heldout_loss" in metrics
    # 03_train planned itself before training (the embedded recipe on this CPU, the tiny profile's max_length and
    # max_steps): the tokens of its first steps in the trainer's sample order are what the trainer then trained
    plan = json.loads((run / "plan" / "local.json").read_text())
    assert (plan["trained_tokens"], plan["optimizer_steps"]) == (metrics["trained_tokens"], metrics["optimizer_steps"])
    assert [o["name"] for o in plan["overheads"]] == ["model download + load", "checkpoint writes", "held-out loss"]
    assert "| train() wall time, s |" in (run / "report" / "budget.md").read_text()
    results = json.loads((run / "eval" / "results.json").read_text())
    # teacher and judge: the shipped GGUF behind llama.cpp's server (lib.core.server.embedded_server)
    from lib.core.model import gguf_path

    assert results["judge"]["served_models"] == [str(gguf_path())]
    assert tiny_loop.params["01_generate"]["teacher_model"] == str(gguf_path())
    assert (run / "report" / "budget.md").exists() and (run / "report" / "budget.png").exists()
    assert list((run / "ledger").glob("*.jsonl"))
    leaked = [str(p) for p in run.rglob("*") if p.is_file() and canary.encode() in p.read_bytes()]
    assert not leaked, f"API key found in {leaked}"


def test_the_runner_serves_records_and_resumes_without_rerunning(tmp_path):
    """`python -m lib.pipeline run` itself, on two phases of the tiny profile (the whole loop runs
    once, in tests/tiny_loop.py): it starts the product's server for the notebooks that take a
    teacher, records each phase in pipeline.json, writes the budget report and never shows the
    key; run again with --resume once everything is done, nothing re-runs, nothing changes."""
    canary = "sk-canary-" + os.urandom(12).hex()
    phases = ["--phases", "01_generate,05_budget"]
    sets = [a for s in ("01_generate.max_requests=1", "01_generate.max_tokens=32",
                        "01_generate.answer_missing_outputs=false") for a in ("--set", s)]
    proc = run_cli(["run", "--profile", "tiny", "--run-id", "e2e", *phases, *sets], tmp_path,
                   env_extra={"OPENAI_API_KEY": canary}, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "runs" / "e2e"
    state = json.loads((run / "pipeline.json").read_text())
    assert list(state["phases"]) == ["01_generate", "05_budget"]
    assert all(p["status"] == "done" for p in state["phases"].values())
    assert len((run / "data" / "generate" / "responses.jsonl").read_text().splitlines()) == 1
    # the teacher: the shipped GGUF behind llama.cpp's server, started by the runner for this run
    from lib.core.model import gguf_path

    assert state["phases"]["01_generate"]["params"]["teacher_model"] == str(gguf_path())
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in (run / "logs" / "teacher-server.log").read_text(errors="replace")
    assert (run / "report" / "budget.md").exists() and (run / "report" / "budget.png").exists()
    assert list((run / "ledger").glob("*.jsonl"))
    leaked = [str(p) for p in run.rglob("*") if p.is_file() and canary.encode() in p.read_bytes()]
    assert not leaked, f"API key found in {leaked}"
    assert canary not in proc.stdout + proc.stderr
    # the kernels' sockets are encrypted (lib/pipeline/execute.py kernel_config): no ipykernel warning
    assert "without encryption" not in proc.stdout + proc.stderr, proc.stderr[-2000:]

    # resume after everything is done: nothing re-runs, nothing changes
    before = {p: (run / p).read_bytes() for p in ("data/generated.jsonl", "data/generate/responses.jsonl")}
    again = run_cli(["run", "--profile", "tiny", "--resume", "e2e", *phases], tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("skipped") == 2
    assert {p: (run / p).read_bytes() for p in before} == before


# ----------------------------------------------------------------------------- cloud profiles, phases, nodes
def cloud_variant(tmp_path, profile="alpaca_7b", notebook="03_train", **changes):
    """A cloud profile of lib/profiles/ with some lines of one notebook changed (None removes a line)."""
    import yaml

    prof = yaml.safe_load((REPO / "lib" / "profiles" / f"{profile}.yaml").read_text())
    for k, v in changes.items():
        if v is None:
            prof["notebooks"][notebook].pop(k)
        else:
            prof["notebooks"][notebook][k] = v
    p = tmp_path / "variant.yaml"
    p.write_text(yaml.safe_dump(prof))
    return str(p)


@pytest.mark.parametrize("profile,notebook,change,message", [
    ("alpaca_7b", "03_train", {"recipe": "embedded"}, "03_train.recipe='embedded' is a laptop recipe"),
    ("alpaca_7b", "03_train", {"recipe": "tiny"}, "03_train.recipe='tiny' is a laptop recipe"),
    ("alpaca_7b", "03_train", {"recipe": None}, "does not name 03_train.recipe"),
    ("alpaca_7b", "03_train", {"model": "embedded"}, "03_train.model='embedded' is a laptop model"),
    ("alpaca_7b", "03_train", {"max_steps": 6}, "03_train.max_steps=6 is a demo step cap"),
    ("alpaca_7b", "03_train", {"max_steps": None}, "does not name 03_train.max_steps"),
    ("alpaca_7b", "03_train", {"nproc": 1}, "03_train.nproc=1 is a fixed process count"),
    ("alpaca_7b", "03_train", {"nproc": None}, "does not name 03_train.nproc"),
    ("cloud_generate", "02_clean", {"recipe": None}, "does not name 02_clean.recipe"),
    ("cloud_generate", "02_clean", {"recipe": "embedded"}, "02_clean.recipe='embedded' is a laptop recipe"),
    ("cloud_generate", "02_clean", {"tokenizer": "embedded"}, "02_clean.tokenizer='embedded' is the embedded model's"),
    ("cloud_generate", "02_clean", {"max_tokens": -1}, "02_clean.max_tokens=-1 is no token budget"),
    ("cloud_generate", "01_generate", {"teacher_model": "embedded"}, "01_generate.teacher_model='embedded' is the embedded"),
    ("cloud_evaluate", "04_evaluate", {"judge_model": "gpt-4o"}, "04_evaluate.judge_model='gpt-4o' is not a dated snapshot"),
    ("cloud_evaluate", "04_evaluate", {"question_set": "own_en"}, "04_evaluate.question_set='own_en' is the project's own"),
])
def test_cloud_profile_refuses_laptop_values(tmp_path, profile, notebook, change, message):
    from lib.core.errors import UserError
    from lib.core.profiles import load_profile, notebook_params
    from lib.pipeline.cloud_rules import check_cloud

    prof = load_profile(cloud_variant(tmp_path, profile, notebook, **change))
    with pytest.raises(UserError, match=re.escape(message)):
        check_cloud(prof, notebook_params(prof, {}))


def test_cloud_profile_leaves_the_recipe_to_the_recipe(tmp_path):
    """What a cloud training profile leaves out is the recipe's (no laptop default behind it), and
    a value it does name that is not a laptop one (another base model) is the user's choice."""
    from lib.core.profiles import load_profile, notebook_params
    from lib.pipeline.cloud_rules import check_cloud

    prof = load_profile("alpaca_7b")
    plan = notebook_params(prof, {})
    assert not {"model", "max_length", "num_train_epochs"} & set(plan[0][2])
    check_cloud(prof, plan)
    other = load_profile(cloud_variant(tmp_path, model="huggyllama/llama-13b"))
    check_cloud(other, notebook_params(other, {}))


def test_cloud_refusal_is_one_line_and_writes_nothing(tmp_path):
    proc = run_cli(["run", "--profile", "alpaca_7b", "--phases", "03_train", "--run-dir", str(tmp_path / "bucket"),
                    "--set", "03_train.max_steps=6"], tmp_path)
    assert_one_line_error(proc, "max_steps=6 is a demo step cap")
    assert not (tmp_path / "bucket").exists()


def test_env_override_is_applied_recorded_and_only_when_set():
    from lib.core.profiles import apply_env_overrides, load_profile, notebook_params

    prof = load_profile("cloud_evaluate")
    plan = notebook_params(prof, {})
    assert apply_env_overrides(prof, plan, env={"BASE_MODEL": "", "MAX_QUESTIONS": ""}) == {}
    done = apply_env_overrides(prof, plan, env={"BASE_MODEL": "/ckpt/base", "MAX_QUESTIONS": "3"})
    (_, _, params), = plan
    assert params["models"] == {"base": "/ckpt/base", "tuned": "{run_dir}/model"}
    assert params["max_questions"] == 3  # numbers as numbers
    assert done["04_evaluate.models.base"] == {"value": "/ckpt/base", "from": "BASE_MODEL",
                                               "replaced": "huggyllama/llama-7b"}
    assert params["__overrides__"]["max_questions"] == "$MAX_QUESTIONS replaced 0"


def test_unknown_phase_is_refused(tmp_path):
    proc = run_cli(["run", "--profile", "tiny", "--phases", "03_trian"], tmp_path)
    assert_one_line_error(proc, "--phases '03_trian' names ['03_trian']")


def test_phases_into_a_run_dir_as_node_1_then_resume(tmp_path):
    """Node 1 writes only its own files (<nb>.node1.ipynb, pipeline.node1.json, no report);
    the same command again skips what it finished."""
    prof = tmp_path / "p.yaml"
    prof.write_text(json.dumps({"description": "t", "teacher": "none", "notebooks": {
        "02_clean": {"max_tokens": -1, "drop_wrong_language": False}, "05_budget": {}}}))
    run_dir = tmp_path / "bucket" / "r1"
    (run_dir / "data").mkdir(parents=True)
    (run_dir / "data" / "generated.jsonl").write_text("".join(
        json.dumps({"id": f"g{i}", "instruction": f"Name the number after {i}.", "input": "", "output": str(i + 1)})
        + "\n" for i in range(6)))
    args = ["run", "--profile", str(prof), "--phases", "02_clean", "--run-dir", str(run_dir)]
    first = run_cli(args, tmp_path, env_extra={"SKYPILOT_NODE_RANK": "1"}, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (run_dir / "02_clean.node1.ipynb").is_file() and not (run_dir / "02_clean.ipynb").exists()
    state = json.loads((run_dir / "pipeline.node1.json").read_text())
    assert list(state["phases"]) == ["02_clean"] and state["phases"]["02_clean"]["status"] == "done"
    assert not (run_dir / "pipeline.json").exists() and not (run_dir / "report" / "budget.md").exists()
    again = run_cli(args, tmp_path, env_extra={"SKYPILOT_NODE_RANK": "1"}, timeout=300)
    assert again.returncode == 0 and "02_clean: done earlier, skipped" in again.stdout
