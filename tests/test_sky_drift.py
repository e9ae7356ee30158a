"""What anything hands a notebook, checked: every `--set`/`-p` a command line shows names a declared
parameter, every profile passes the runner's checks, and every sky task runs its notebooks through
the runner with a cloud profile (never papermill directly). What a task trains is not restated
anywhere to hold together: the launcher derives it from the profile (lib/launch/task_profile.py)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lib.core.params import declared_params
from lib.core.profiles import PROFILES, load_profile, notebook_params
from lib.launch.task_profile import task_profile
from lib.pipeline.cloud_rules import CLOUD_RULES, check_cloud

REPO = Path(__file__).resolve().parent.parent
SKY = REPO / "sky"
TASKS = sorted(SKY.glob("*.yaml"))
NOTEBOOKS = {p.stem: declared_params(p) for p in (REPO / "notebooks").glob("*.ipynb")}
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
    check_cloud(prof, plan)  # a cloud profile holds no laptop value
    for var, where in prof["env"].items():
        nb, _, rest = where.partition(".")
        assert rest.split(".")[0] in NOTEBOOKS[nb], f"{name}: env {var} -> {where}"


@pytest.mark.parametrize("path", TASKS, ids=[p.stem for p in TASKS])
def test_task_runs_its_cloud_profile_through_the_runner(path):
    raw = yaml.safe_load(path.read_text())
    script = raw["run"]
    assert "papermill" not in script and "-p " not in script, "notebooks run through the runner only"
    runs = task_profile(script, raw["envs"])
    if runs is None:
        assert "service" in raw, f"{path.name} runs no profile: only a SkyServe task may"
        return
    (run,) = RUN_LINE.findall(script)
    assert run == (runs.profile, ",".join(runs.phases))
    # the profile holds the parameters; the script adds only the bucket path of this job's checkpoints
    sets = re.findall(r"--set\s+(\S+?)=", script)
    # (DPO saves no intermediate checkpoint: sky/dpo_7b.yaml adds nothing)
    assert sets == (["03_train.checkpoint_dir"] if runs.training_phase == "03_train" else []), sets
    prof = load_profile(runs.profile)
    assert prof["target"] == "cloud", f"{runs.profile} must be a cloud profile (target: cloud)"
    # every override variable the profile reads is declared (empty) in the task's envs, and the
    # envs restate nothing the profile or its recipe says
    for var in prof["env"]:
        assert raw["envs"].get(var) == "", f"{path.name}: declare envs {var}: \"\" (the profile's override)"
    if runs.training_phase == "03_train":  # Young/Daly checkpoints on spot only: the profile says what the resources say
        spot = bool(raw["resources"].get("use_spot"))
        assert prof["notebooks"]["03_train"].get("spot", False) is spot, f"{runs.profile}: 03_train.spot: {spot}"
    assert not {"RECIPE", "OVERHEAD_HOURS"} & set(raw["envs"]), "the recipe comes from the profile"


def test_common_sh_runs_no_notebook():
    common = (SKY / "common.sh").read_text()
    assert "shear_notebook" not in common and "python -m papermill" not in common
    assert "SKYPILOT_TASK_ID" in common  # the bucket layout stays


def test_cloud_rules_cover_the_notebooks_they_name():
    for nb, rules in CLOUD_RULES.items():
        assert set(rules) <= set(NOTEBOOKS[nb]), nb


@pytest.mark.parametrize("nb", sorted(CLOUD_RULES))
def test_a_refused_notebook_default_must_be_named(nb):
    """A laptop default never reaches a node silently: every rule that refuses its notebook's own
    default is one a cloud profile must name (papermill reads the defaults from the notebook)."""
    import ast

    import papermill

    defaults = papermill.inspect_notebook(str(REPO / "notebooks" / f"{nb}.ipynb"))
    for param, rule in CLOUD_RULES[nb].items():
        if rule.refused(ast.literal_eval(defaults[param]["default"])):
            assert rule.must_name, f"{nb}.{param}: its default is refused, so cloud profiles must name it"
