"""The launch plan counts DPO's FLOPs with the project's one FLOP count (lib/budget/throughput.py
`flops_per_token(reference_forwards=)`): policy forward + backward on chosen and rejected, plus the
frozen reference's forward every epoch unless its log-probs are stored; and the preference budget
phase exists, optional in older budget files."""
from __future__ import annotations

import pytest

from lib.budget import PHASES, load_budgets
from lib.budget.throughput import flops_per_token, model_shape
from lib.launch.plan import describe_plan, make_plan


def test_reference_forward_by_hand():
    shape = model_shape("huggyllama/llama-7b")
    n, attn = float(shape.matmul_params), 4.0 * shape.layers * shape.hidden * 1024
    sft = flops_per_token(shape, "full", 1024)
    live = flops_per_token(shape, "full", 1024, reference_forwards=1.0)
    stored = flops_per_token(shape, "full", 1024, reference_forwards=1 / 3)
    assert live.model - sft.model == pytest.approx(2 * n + attn)  # one forward: 2N + 4 L d s
    assert stored.model - sft.model == pytest.approx((2 * n + attn) / 3)
    assert live.model / sft.model == pytest.approx(8 / 6, rel=0.02)  # ~ (6N + 2N) / 6N when N dominates
    assert "reference forward" in live.formula and "reference" not in sft.formula


def test_dpo_7b_plan_is_hand_checkable():
    p = make_plan("dpo_7b", "dpo_7b", accelerator="A100-80GB", gpus_per_node=8, nodes=1, data=None,
                  tokens_override=16_000_000, provisioning_hours=0.3)
    sft = make_plan("dpo_7b", "alpaca_7b", accelerator="A100-80GB", gpus_per_node=8, nodes=1, data=None,
                    tokens_override=16_000_000, provisioning_hours=0.3)
    assert p.hyperparameters["dpo"]["precompute_ref_log_probs"] is not None and sft.hyperparameters["dpo"] is None
    ref = 1.0 / p.epochs if p.hyperparameters["dpo"]["precompute_ref_log_probs"] else 1.0
    shape = model_shape(p.base_model)
    fl = flops_per_token(shape, p.method, p.attn_span, checkpointing=p.hyperparameters["gradient_checkpointing"],
                         reference_forwards=ref)
    assert p.flops_per_token["model"] == pytest.approx(fl.model) and p.flops_per_token["hardware"] == pytest.approx(fl.hardware)
    assert p.trained_tokens == pytest.approx(p.tokens_per_epoch * p.epochs) and p.tokens_per_epoch < 16e6  # pair tokens, less held out
    t = p.tokens_per_s_interval["expected"] * p.processed_tokens / p.trained_tokens  # per processed position
    assert t == pytest.approx(p.utilization["expected"] * p.peak_flops / fl.hardware)
    assert p.compute_hours == pytest.approx(p.trained_tokens / (p.tokens_per_s_per_gpu * 8) / 3600)
    text = "\n".join(describe_plan(p))
    assert "dpo:       beta" in text and "reference forward" in text


def test_preference_phase_is_budgeted_and_optional(tmp_path):
    assert "preference" in PHASES
    pb = load_budgets().phase("preference")
    assert 0 < pb.target <= pb.cap
    old = tmp_path / "budgets.yaml"
    old.write_text("currency: USD\nphases:\n" + "".join(f"  {p}: {{target: 1, cap: 2}}\n"
                                                       for p in ("data", "training", "evaluation", "serving")))
    assert load_budgets(old).phase("preference").cap == 0  # not planned: nothing billed may be spent on it


def test_preference_budget_is_the_derivation_in_its_comment():
    """budgets.yaml's preference target and cap, recomputed as its comment derives them: judging
    calls x genai-prices' price, and sky/dpo_7b.yaml's plan (its TRAIN_TOKENS and SAMPLING_HOURS, the
    profile's k and prompts) x the p4de prices (tests/sky_catalog.py), each sum rounded up to $5. A
    changed plan, task or price shows here."""
    import math

    import yaml
    from sky_catalog import P4DE_ON_DEMAND_USD, P4DE_SPOT_USD

    from lib.budget.prices import api_cost
    from lib.core.paths import REPO
    from lib.launch.estimate import sampling_overhead

    envs = {k: str(v) for k, v in yaml.safe_load((REPO / "sky" / "dpo_7b.yaml").read_text())["envs"].items()}
    params = yaml.safe_load((REPO / "lib" / "profiles" / "dpo_7b.yaml").read_text())["notebooks"]["08_prefer"]
    call = api_cost("gpt-4o-2024-08-06", 800, 100)[0]
    judging = {"expected": 20_000 / 0.5 * 2 * call, "high": 20_000 / 0.4 * 2 * call}
    assert float(envs["EST_API_USD"]) == pytest.approx(judging["expected"])  # the task prices the judge as derived
    p = make_plan("dpo_7b", "dpo_7b", accelerator="A100-80GB", gpus_per_node=8, nodes=1, data=None,
                  tokens_override=float(envs["TRAIN_TOKENS"]), spot=True, extra=[sampling_overhead(envs, params)])
    gpu = {"expected": (p.compute_hours + p.overhead_hours) * P4DE_SPOT_USD,
           "high": (p.compute_hours_interval["high"] + p.overhead_hours) * P4DE_ON_DEMAND_USD}
    assert judging["expected"] == pytest.approx(240) and gpu["expected"] == pytest.approx(40.74, abs=0.05)
    assert gpu["high"] == pytest.approx(133.05, abs=0.05)
    up5 = lambda x: 5 * math.ceil(x / 5)  # noqa: E731
    pb = load_budgets().phase("preference")
    assert pb.target == up5(judging["expected"] + gpu["expected"])
    assert pb.cap == up5(judging["high"] + gpu["high"])


def test_dpo_7b_dry_run_is_hand_checkable(tmp_path, monkeypatch, capsys):
    """`python -m lib.launch sky/dpo_7b.yaml --dry-run` (in-process, offline: the labelled fallback price):
    every figure is its inputs' product -- DPO's hours from the pair tokens and the speed, the overhead lines
    (the published model only, node 0's sampling), dollars = hours x price + the judge's API dollars."""
    import re

    from lib.launch.estimate import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SKY_RUNTIME_DIR", raising=False)
    main(["sky/dpo_7b.yaml", "--dry-run"])
    out = capsys.readouterr().out
    num = lambda s: float(s.replace(",", ""))  # noqa: E731
    tokens = num(re.search(r"tokens: +([\d,]+) x 1 epochs = ([\d,]+) trained", out).group(2))
    assert tokens == 16_000_000 * 0.75  # TRAIN_TOKENS less the pairs 08_prefer holds out
    m = re.search(r"training: +[\d,]+ trained tokens / \(([\d,.]+) tokens/s/GPU x 8 GPUs\) = ([\d,]+) s", out)
    assert num(m.group(2)) == pytest.approx(tokens / num(m.group(1)) / 8, abs=1)
    lines = dict(re.findall(r"overhead: +([^:]+): ([\d,]+) s", out))
    assert num(lines["sampling answers (node 0)"]) == 4 * 3600  # the task's SAMPLING_HOURS
    assert "no intermediate checkpoint" in out and "half the run" in out  # DPO restarts after a preemption
    total = re.search(r"total: +([\d.]+) h of overheads", out).group(1)
    assert float(total) == pytest.approx(sum(num(v) for v in lines.values()) / 3600, abs=0.002)
    hours = float(re.search(r"hours: +([\d.]+) h", out).group(1))
    assert hours == pytest.approx(num(m.group(2)) / 3600 + float(total), abs=0.01)
    usd = num(re.search(r"estimate: +\$([\d,.]+) \(compute \$([\d,.]+) \+ API \$240.00", out).group(1))
    assert usd == pytest.approx(hours * 8.65 + 240, abs=0.1)
    assert "FALLBACK PRICE" in out and "budget:    preference: target $285.00, cap $435.00" in out
