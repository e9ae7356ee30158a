"""budgets.yaml validation: every bad file gets ONE line naming the key and the fix."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from lib.budget import Ledger, load_budgets
from lib.core.errors import UserError
from lib.core.paths import BUDGETS_YAML, REPO

GOOD = """\
currency: USD
phases:
  data:       {target: 500, cap: 600, warn: 0.8}
  training:   {target: 300, cap: 400, warn: 350}
  evaluation: {target: 50,  cap: 100}
  serving:    {target: 20,  cap: 50,  warn: 0.5}
prices:
  my-teacher: {input: 0.3, output: 1.2, cached_input: 0.15}
reference: {api_model: gpt-4o-mini, gpu: "A100-80GB:8", spot: true}
"""

# (name, budgets.yaml text, words the one-line error must contain)
BAD = [
    ("unknown_top_key", GOOD + "curency: USD\n", ["curency", "did you mean 'currency'"]),
    ("unknown_phase", GOOD.replace("serving:", "servng:"), ["phases.", "servng", "did you mean 'serving'"]),
    ("unknown_phase_key", GOOD.replace("{target: 50,  cap: 100}", "{target: 50, capp: 100}"),
     ["phases.evaluation.", "capp", "did you mean 'cap'"]),
    ("negative_target", GOOD.replace("target: 500", "target: -5"), ["phases.data.target", "negative", ">= 0"]),
    ("negative_price", GOOD.replace("input: 0.3", "input: -0.3"), ["prices.my-teacher.input", "negative"]),
    ("cap_below_target", GOOD.replace("{target: 300, cap: 400, warn: 350}", "{target: 300, cap: 200}"),
     ["phases.training.cap", "below its target", "raise the cap"]),
    ("warn_above_cap", GOOD.replace("warn: 350", "warn: 450"), ["phases.training.warn", "above the cap"]),
    ("not_a_number", GOOD.replace("cap: 600", "cap: lots"), ["phases.data.cap", "must be a number"]),
    ("missing_cap", GOOD.replace("{target: 20,  cap: 50,  warn: 0.5}", "{target: 20}"),
     ["phases.serving.cap", "add cap"]),
    ("missing_phase", GOOD.replace("  serving:    {target: 20,  cap: 50,  warn: 0.5}\n", ""),
     ["phases.serving", "add serving"]),
    ("missing_phases", "currency: USD\n", ["'phases'", "add phases"]),
    ("bad_yaml", GOOD.replace("data:       {target: 500,", "data:       {target: 500"),
     ["invalid YAML", "line", "fix the syntax"]),
    ("tab_yaml", "currency: USD\nphases:\n\tdata: 1\n", ["invalid YAML", "line 3"]),
    ("not_mapping", "- 1\n- 2\n", ["expected a mapping"]),
    ("currency", GOOD.replace("currency: USD", "currency: EUR"), ["currency", "set currency: USD"]),
    ("price_missing_output", GOOD.replace("{input: 0.3, output: 1.2, cached_input: 0.15}", "{input: 0.3}"),
     ["prices.my-teacher.output", "add output"]),
    ("unknown_price_key", GOOD.replace("cached_input: 0.15", "cache_input: 0.15"),
     ["prices.my-teacher.", "cache_input", "did you mean 'cached_input'"]),
    ("batch_discount", GOOD.replace("cached_input: 0.15", "batch_discount: 2"),
     ["prices.my-teacher.batch_discount", "fraction"]),
    ("unknown_reference_key", GOOD.replace("spot: true", "spto: true"), ["reference.", "spto", "did you mean 'spot'"]),
    ("bad_reference_gpu", GOOD.replace('gpu: "A100-80GB:8"', "gpu: A100"), ["reference.gpu", "A100-80GB:8"]),
    ("bool_amount", GOOD.replace("cap: 600", "cap: yes"), ["phases.data.cap", "must be a number"]),
]


def test_repo_budgets_file_loads_with_seed_recipe_targets():
    b = load_budgets(BUDGETS_YAML)
    assert b.phase("data").target <= 500  # Alpaca: < $500 of API for the data
    assert 100 <= b.phase("training").target <= 300  # Vicuna 7B ~$140 .. 13B ~$300 on spot
    assert set(b.phases) == {"data", "training", "evaluation", "serving", "preference"}
    for p in b.phases.values():
        assert p.target <= p.cap and 0 < p.warn_usd <= p.cap
    assert b.reference["gpu"] == "A100-80GB:8" and b.reference["spot"] is True


def test_good_file_parses_warn_fraction_and_amount(tmp_path):
    path = tmp_path / "budgets.yaml"
    path.write_text(GOOD)
    b = load_budgets(path)
    assert b.warn_usd("data") == pytest.approx(480.0)  # 0.8 of the 600 cap
    assert b.warn_usd("training") == pytest.approx(350.0)  # an amount
    assert b.warn_usd("evaluation") == pytest.approx(80.0)  # default 0.8
    assert b.prices["my-teacher"].cached_input == pytest.approx(0.15)
    assert b.prices["my-teacher"].batch_discount == pytest.approx(0.5)


@pytest.mark.parametrize("name,text,words", BAD, ids=[b[0] for b in BAD])
def test_bad_file_gets_one_line_naming_key_and_fix(tmp_path, name, text, words):
    path = tmp_path / "budgets.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as e:
        load_budgets(path)
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert str(path) in msg
    assert ": " in msg  # problem: fix
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


def test_missing_file_names_path_and_fix(tmp_path):
    with pytest.raises(UserError, match=r"budgets.yaml not found at .*nope.yaml: copy .* or pass budgets_path"):
        load_budgets(tmp_path / "nope.yaml")


def test_cap_below_already_spent_is_refused(tmp_path):
    path = tmp_path / "budgets.yaml"
    path.write_text(GOOD)
    ledger = Ledger(tmp_path / "ledger", writer="w")
    ledger.record_compute("training", 0, 3600 * 10, accelerator="A100-80GB", count=8, hourly_usd=25.0)  # $250
    Ledger(tmp_path / "ledger", writer="w2", budgets=load_budgets(path))  # cap 400 > 250: fine
    path.write_text(GOOD.replace("{target: 300, cap: 400, warn: 350}", "{target: 100, cap: 200, warn: 0.9}"))
    with pytest.raises(UserError) as e:
        Ledger(tmp_path / "ledger", writer="w2", budgets=load_budgets(path))
    msg = str(e.value)
    assert "phases.training.cap ($200.00) is below what this run already spent on training ($250.00)" in msg
    assert "raise the cap or start a new run directory" in msg and "\n" not in msg


def test_check_cli_one_line_and_nonzero_exit(tmp_path):
    bad = tmp_path / "budgets.yaml"
    bad.write_text(GOOD.replace("serving:", "servng:"))
    r = subprocess.run([sys.executable, "-m", "lib.budget", "check", str(bad)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: ") and "servng" in r.stderr
    ok = subprocess.run([sys.executable, "-m", "lib.budget", "check", str(BUDGETS_YAML)], cwd=REPO,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert textwrap.dedent(ok.stdout).strip().endswith("ok")
