"""Drift guards: every parameter anything hands a notebook is one that notebook declares, every
sky task runs through the runner with a cloud profile, and the YAML headers state facts that
are checked here against the profile, the recipe and the resources."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lib.core.params import declared_params
from lib.pipeline.runner import CLOUD_RULES, PROFILES, check_cloud, load_profile, notebook_params
from lib.launch.skyrun import header_facts as facts
from lib.train.recipes import load_recipe

REPO = Path(__file__).resolve().parent.parent
SKY = REPO / "sky"
TASKS = sorted(SKY.glob("*.yaml"))
NOTEBOOKS = {p.stem: declared_params(p) for p in (REPO / "notebooks").glob("*.ipynb")}
KINDS = {"train", "generate", "evaluate", "serve"}  # serve: sky/serve.yaml (SkyServe) declares its own checks
RUN_LINE = re.compile(r"python -m lib\.pipeline run --profile (\S+) --phases (\S+) --run-dir \"\$RUN_DIR\"")


def texts() -> list[tuple[Path, str]]:
    """Everything that may tell a user or a machine which notebook parameters to pass."""
    files = [*SKY.glob("*"), *REPO.glob("lib/**/*.py"), *REPO.glob("lib/profiles/*.yaml"), REPO / "README.md",
             *REPO.glob("docs/**/*.md"), REPO / "Makefile", *REPO.glob("bench/*.py")]
    return [(f, f.read_text(errors="replace")) for f in files if f.is_file()]


def test_every_set_and_p_flag_names_a_declared_parameter():
    seen_set = seen_p = 0
    bad = []
    for path, text in texts():
        for nb, param in re.findall(r"--set[ =]+[\"']?(\d\d_[a-z]+)\.([a-z_]+)=", text):
            seen_set += 1
            if nb not in NOTEBOOKS or param not in NOTEBOOKS[nb]:
                bad.append(f"{path.relative_to(REPO)}: --set {nb}.{param}")
        # papermill's `-p name value` on a command line (prose may show a misspelling on purpose):
        # the name must be declared by some notebook
        for line in text.splitlines():
            if not re.search(r"papermill|python -m|sky (jobs )?launch|NB_PARAMS", line):
                continue
            for param in re.findall(r"(?<![\w-])-p (?!\d)([a-z_]+) ", line):
                seen_p += 1
                if not any(param in d for d in NOTEBOOKS.values()):
                    bad.append(f"{path.relative_to(REPO)}: -p {param}")
    assert seen_set >= 5, "the scan found no --set examples: the pattern has drifted"
    assert not bad, bad


def test_the_scan_catches_the_old_skyrun_example():
    """`-p num_instructions 4` (lib/launch/skyrun.py's old usage line) is not a parameter of 01_generate."""
    assert "num_instructions" not in NOTEBOOKS["01_generate"]
    assert "num_instructions_to_generate" in NOTEBOOKS["01_generate"]
    assert "-p num_instructions" not in (REPO / "lib" / "launch" / "skyrun.py").read_text()


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILES.glob("*.yaml")))
def test_profiles_pass_only_declared_parameters(name):
    prof = load_profile(name)
    plan = notebook_params(prof, {})  # raises on an undeclared parameter
    check_cloud(prof, plan)  # a cloud profile holds no laptop default
    for var, where in prof["env"].items():
        nb, _, rest = where.partition(".")
        assert rest.split(".")[0] in NOTEBOOKS[nb], f"{name}: env {var} -> {where}"


@pytest.mark.parametrize("path", TASKS, ids=[p.stem for p in TASKS])
def test_task_runs_its_cloud_profile_through_the_runner(path):
    raw = yaml.safe_load(path.read_text())
    f = facts(path)
    assert f.get("kind") in KINDS, f"{path.name}: state `#   kind: <{'|'.join(sorted(KINDS))}>` in the header"
    if f["kind"] == "serve":
        return  # SkyServe tasks serve a model; their header and rehearsal are their own
    script = raw["run"]
    assert "papermill" not in script and "-p " not in script, "notebooks run through lib.pipeline.runner only"
    (run,) = RUN_LINE.findall(script)
    # the profile holds the parameters; the script adds only the bucket path of this job's checkpoints
    sets = re.findall(r"--set\s+(\S+?)=", script)
    assert sets == (["03_train.checkpoint_dir"] if f["kind"] == "train" else []), sets
    prof_name, phases = run
    assert f["profile"] == prof_name
    # the header shows the same command the script runs
    assert f"python -m lib.pipeline run --profile {prof_name} --phases {phases} --run-dir $RUN_DIR" in path.read_text()
    prof = load_profile(prof_name)
    assert prof["target"] == "cloud", f"{prof_name} must be a cloud profile (target: cloud)"
    assert set(phases.split(",")) <= set(prof["notebooks"])
    # every override variable the profile reads is declared (empty) in the task's envs
    for var in prof["env"]:
        assert raw["envs"].get(var) == "", f"{path.name}: declare envs {var}: \"\" (the profile's override)"
    if f["kind"] == "train":
        nb = prof["notebooks"]["03_train"]
        recipe = load_recipe(nb["recipe"])
        assert f["recipe"] == nb["recipe"] == raw["envs"]["RECIPE"] == recipe.name
        assert f["base_model"] == nb["model"] == recipe.base_model
        assert float(f["epochs"]) == recipe.num_train_epochs
        assert (nb["max_steps"], nb["num_train_epochs"], nb["nproc"]) == (0, 0, 0)
        acc = raw["resources"]["accelerators"]
        assert f["accelerators"] == acc == f"{recipe.hardware.accelerator}:{recipe.hardware.gpus_per_node}"
        assert "--set 03_train.checkpoint_dir=\"$CKPT_DIR\"" in script
    if f["kind"] == "evaluate":
        nb = prof["notebooks"]["04_evaluate"]
        assert f["judge"] == nb["judge_model"] and f["questions"] == "vicuna 80"
        assert nb["question_set"].startswith("vicuna:") and nb["max_questions"] == 0
    if f["kind"] == "generate":
        assert f["teacher"] == prof["notebooks"]["01_generate"]["teacher_model"]


def test_common_sh_runs_no_notebook():
    common = (SKY / "common.sh").read_text()
    assert "shear_notebook" not in common and "python -m papermill" not in common
    assert "SKYPILOT_TASK_ID" in common  # the bucket layout stays


def test_cloud_rules_cover_the_notebooks_they_name():
    for nb, rules in CLOUD_RULES.items():
        assert set(rules) <= NOTEBOOKS[nb], nb
