"""sky/*.yaml: SkyPilot parses each one offline, plus the checks SkyPilot does not do, and the
launcher's estimate and refusal against a catalog seeded in a temporary HOME (no network)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from launch_driver import launch_many
from sky_catalog import seeded_home

REPO = Path(__file__).resolve().parent.parent
TASKS = sorted((REPO / "sky").glob("*.yaml"))
TRAIN_8X = ["train_7b", "train_13b", "train_vicuna_7b", "train_vicuna_13b"]

@pytest.fixture(scope="module")
def sky_home(tmp_path_factory) -> dict:
    """Environment for a subprocess: HOME with the seeded catalog (tests/sky_catalog.py), no network."""
    return seeded_home(tmp_path_factory.mktemp("skyhome"))


@pytest.fixture(scope="module")
def launched(sky_home, tmp_path_factory) -> dict[str, dict]:
    """The launcher's answers the tests below read, from one process (tests/launch_driver.py); a run
    that already spent $397 of the $400 training cap for the --run-dir case."""
    from lib.budget import Ledger

    run = tmp_path_factory.mktemp("spent") / "run"
    Ledger(run / "ledger", writer="train").record_compute("training", 0, 3600, hourly_usd=397.0)
    big = ["--env", "TRAIN_TOKENS=3000000000"]
    return launch_many({
        "7b": ["sky/train_7b.yaml", "--dry-run"],
        "on-demand": ["sky/train_7b.yaml", "--dry-run", "--on-demand"],
        "override": ["sky/train_7b.yaml", "--dry-run", "--env", "BASE_MODEL=/ckpt/llama-7b-zh"],
        "big": ["sky/train_7b.yaml", "--dry-run", *big],
        "forced": ["sky/train_7b.yaml", "--dry-run", "--force", *big],
        "spent": ["sky/train_7b.yaml", "--dry-run", "--run-dir", str(run)],
    }, sky_home)


def test_the_task_set_is_complete():
    assert {p.stem for p in TASKS} >= {"generate", "evaluate", "train_lora", "dpo_7b", *TRAIN_8X}


@pytest.mark.parametrize("path", TASKS, ids=[p.stem for p in TASKS])
def test_task_parses_and_passes_project_checks(path):
    import sky
    import sky.jobs.recovery_strategy  # noqa: F401  (registers the strategies)
    from sky.utils.registry import JOBS_RECOVERY_STRATEGY_REGISTRY

    task = sky.Task.from_yaml(str(path))
    raw = yaml.safe_load(path.read_text())
    text = path.read_text()
    # usage header with the commands to run it; its hours and dollars come from the launcher's dry run,
    # not from numbers restated in the header
    assert text.startswith("# shear:") and "Usage:" in text
    assert f"python -m lib.launch sky/{path.name} --dry-run" in text
    assert not re.search(r"^#\s*expected_(hours|usd):", text, re.M)
    service = "service" in raw  # SkyServe replaces preempted replicas itself: no job_recovery, no notebooks
    for res in task.resources:
        assert res.use_spot is True
        if service:
            assert task.service is not None and res.ports, "a SkyServe task needs service: and resources.ports"
            continue
        rec = res.job_recovery
        # SkyPilot accepts any string on the client; a typo would only fail on the server
        assert rec and rec["strategy"].lower() in JOBS_RECOVERY_STRATEGY_REGISTRY.keys(), rec
        assert rec.get("max_restarts_on_errors", 0) >= 1
    # secrets only as SkyPilot secrets, never as envs with a value
    assert raw.get("secrets"), "declare the API key / HF token under secrets"
    for key in raw.get("envs", {}):
        assert not re.search(r"(KEY|TOKEN|SECRET|PASSWORD)$", key) or key == "API_KEY_ENV", key
    assert set(raw["secrets"]).isdisjoint(raw.get("envs", {}))
    # bucket mounted MOUNT_CACHED; checkpoints keyed on SKYPILOT_TASK_ID (in sky/common.sh)
    (mount,) = task.storage_mounts.values()
    assert mount.mode.name == "MOUNT_CACHED"
    assert "shear_paths" in raw["run"] and "SKYPILOT_TASK_ID" in (REPO / "sky" / "common.sh").read_text()
    assert "shear_setup" in raw["setup"] and "requirements.txt" in (REPO / "sky" / "common.sh").read_text()
    # notebooks run through the runner (which writes the budget report after every run, failed ones too)
    assert ("python -m lib.pipeline run --profile" in raw["run"] or service) and "papermill" not in raw["run"]
    assert raw["envs"].get("BUDGET_PHASE") in ("data", "training", "evaluation", "serving", "preference")
    if path.stem in TRAIN_8X:
        assert {str(a): c for r in task.resources for a, c in r.accelerators.items()} == {"A100-80GB": 8}
        assert "03_train" in raw["run"]


def test_secrets_are_not_printed_by_the_safe_yaml_dump():
    import sky

    config = yaml.safe_load((REPO / "sky" / "generate.yaml").read_text())
    task = sky.Task.from_yaml_config(config, secrets_overrides=[("OPENAI_API_KEY", "sk-test-do-not-print")])
    assert task.secrets["OPENAI_API_KEY"].get_secret_value() == "sk-test-do-not-print"
    # the plain dump prints secrets (SkyPilot's documented behaviour); only the safe form may be logged
    assert "sk-test-do-not-print" in str(task.to_yaml_config())
    assert "sk-test-do-not-print" not in str(task.to_yaml_config(use_user_specified_yaml=True))


def test_launcher_estimate_is_hand_checkable(launched):
    from lib.train.recipes import load_recipe
    from tests.test_launch_plan import speed_by_hand

    r = launched["7b"]
    assert r["code"] == 0, r["stderr"]
    # 10.4M tokens less the 10% held out x 3 epochs / (tokens/s/GPU from FLOPs x 8 GPUs) + the overhead lines
    # (each checked by hand in tests/test_launch_plan.py), with no data every token attending to max_length (512)
    # positions; x $8.65/h (p4de.24xlarge spot, the seeded catalog row)
    tps = speed_by_hand(load_recipe("alpaca_7b"), "A100-80GB", 512)["expected"]
    compute = 10_400_000 * 0.9 * 3 / (tps * 8) / 3600
    lines = re.findall(r"overhead: +([^:]+): ([\d,.]+) s = ", r["stdout"])
    assert [name for name, _ in lines] == ["provisioning + setup", "model download + load", "checkpoint writes",
                                           "held-out loss", "spot preemptions"]
    over = sum(float(v.replace(",", "")) for _, v in lines) / 3600
    hours = compute + over
    assert "p4de.24xlarge (A100-80GB:8, spot) at $8.650/h" in r["stdout"]
    assert f"hours:     {hours:.2f} h" in r["stdout"] and f"= {compute:.3f} h + {over:.3f} h overheads" in r["stdout"]
    money = lambda label, text: float(re.search(label + r" *\$([\d,.]+)", text).group(1).replace(",", ""))  # noqa: E731
    assert money("estimate:", r["stdout"]) == pytest.approx(hours * 8.65, abs=0.01)
    assert money("after this run", r["stdout"]) == pytest.approx(400 - hours * 8.65, abs=0.01)
    assert "dry run: nothing launched" in r["stdout"]
    # what it trains comes from the profile the run script names and that profile's recipe
    assert "model:     huggyllama/llama-7b (recipe alpaca_7b;" in r["stdout"]
    od = launched["on-demand"]
    # on demand: the same hours but no spot preemptions, at the on-demand price
    od_hours = hours - float(lines[-1][1].replace(",", "")) / 3600
    assert "at $27.447/h" in od["stdout"] and money("estimate:", od["stdout"]) == pytest.approx(od_hours * 27.447, abs=0.01)


def test_launcher_applies_the_profiles_override(launched):
    """--env BASE_MODEL reaches the plan through the variable the profile declares, printed."""
    r = launched["override"]
    assert r["code"] == 0, r["stderr"]
    assert "override: 03_train.model = '/ckpt/llama-7b-zh' from $BASE_MODEL" in r["stdout"]
    assert "model:     /ckpt/llama-7b-zh (recipe alpaca_7b;" in r["stdout"]


def test_launcher_refuses_past_the_remaining_budget(launched):
    big = launched["big"]
    assert big["code"] == 2
    assert big["stderr"].startswith("error: estimated $") and big["stderr"].count("\n") == 1
    assert "exceeds the remaining $400.00" in big["stderr"] and "--force" in big["stderr"]
    forced = launched["forced"]
    assert forced["code"] == 0 and "warning (--force)" in forced["stderr"]
    # a run that already spent $397 of the $400 training cap cannot afford the ~$6 job
    r = launched["spent"]
    assert r["code"] == 2 and "exceeds the remaining $3.00" in r["stderr"] and "(spent $397.00)" in r["stderr"]


def test_launcher_without_catalog_uses_the_labelled_fallback(tmp_path):
    """Offline: a GPU task is priced at budgets.yaml's documented fallback, labelled; a CPU task, which
    has no fallback, is one line."""
    env = {**os.environ, "HOME": str(tmp_path), "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    env.pop("SKY_RUNTIME_DIR", None)
    out = launch_many({"7b": ["sky/train_7b.yaml", "--dry-run"], "cpu": ["sky/generate.yaml", "--dry-run"]}, env)
    r, cpu = out["7b"], out["cpu"]
    assert r["code"] == 0, r["stderr"]
    assert "at $8.650/h per node [FALLBACK PRICE: budgets.yaml reference.gpu_hourly_usd_fallback" in r["stdout"]
    assert cpu["code"] == 2 and cpu["stderr"].count("\n") == 1
    assert "catalog is not on this machine" in cpu["stderr"] and "sky show-gpus" in cpu["stderr"]
    assert not (tmp_path / ".sky" / "catalogs" / "v8" / "aws" / "vms.csv").exists()  # nothing was downloaded
