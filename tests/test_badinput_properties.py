"""Property-based bad input (issue 23 item 5): hypothesis writes malformed files the user gives or the
project reads back; each gets a result or one UserError line, never a traceback, and no file on disk changes.

In process (no subprocess per example) and bounded: `derandomize=True` (the same examples on every
machine, so CI is reproducible), `max_examples` per class below, no deadline (2 shared cores).
docs/robustness.md counts the classes and examples.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib.budget import load_budgets
from lib.budget.ledger import Ledger
from lib.core.errors import UserError
from lib.core.files import read_jsonl
from lib.core.model import check_checkpoint
from lib.core.profiles import load_profile, notebook_params, parse_sets
from lib.serve.run_model import training_metadata

EXAMPLES = 100  # per class: 7 classes x 100 = 700 examples, ~3 s on 2 loaded cores
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# JSON-ish values: what a user's hand or a torn write puts where a value belongs
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
# raw bytes: binary, truncated UTF-8, text
raw = st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8")),
                st.builds(lambda v: json.dumps(v, default=str).encode()[: 50], values))


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _only_user_errors(fn, root: Path) -> None:
    """`fn()` returns or raises UserError (one line); the files under `root` are unchanged."""
    before = _tree(root)
    try:
        fn()
    except UserError as e:
        assert "\n" not in str(e) and len(str(e)) < 600, str(e)
    assert _tree(root) == before


@SETTINGS
@given(value=st.text(max_size=30), param=st.sampled_from(["max_steps", "learning_rate", "packing", "model",
                                                          "overrides", "nproc"]))
def test_set_values(value, param):
    """`--set 03_train.PARAM=VALUE` against the typed parameters cell: typed result or one line."""
    prof = load_profile("local")
    try:
        plan = notebook_params(prof, parse_sets([f"03_train.{param}={value}"]))
    except UserError as e:
        assert "\n" not in str(e)
        return
    got = dict((n, p) for n, _, p in plan)["03_train"][param]
    want = {"max_steps": int, "nproc": int, "learning_rate": float, "packing": bool, "model": str, "overrides": dict}
    assert isinstance(got, want[param]) and (param not in ("max_steps", "nproc") or not isinstance(got, bool))


@SETTINGS
@given(body=st.one_of(raw, st.builds(lambda v: yaml.safe_dump(v).encode(), values),
                      st.builds(lambda d: yaml.safe_dump({"currency": "USD", "phases": d}).encode(),
                                st.dictionaries(st.sampled_from(["data", "training", "evaluation", "serving", "x"]),
                                                values, max_size=4))))
def test_budgets_yaml(tmp_path_factory, body):
    root = tmp_path_factory.mktemp("b")
    (root / "budgets.yaml").write_bytes(body)
    _only_user_errors(lambda: load_budgets(root / "budgets.yaml"), root)


@SETTINGS
@given(body=st.one_of(raw, st.builds(lambda v: yaml.safe_dump(v).encode(), values),
                      st.builds(lambda nb: yaml.safe_dump({"notebooks": nb}).encode(),
                                st.dictionaries(st.sampled_from(["01_generate", "03_train", "zz"]), values, max_size=2))))
def test_profiles(tmp_path_factory, body):
    root = tmp_path_factory.mktemp("p")
    (root / "p.yaml").write_bytes(body)
    _only_user_errors(lambda: notebook_params(load_profile(str(root / "p.yaml")), {}), root)


@SETTINGS
@given(lines=st.lists(st.one_of(raw, st.builds(lambda v: json.dumps(v, default=str).encode(), values),
                                st.builds(lambda usd, ph: json.dumps({"id": "api:1", "kind": "api", "phase": ph,
                                                                       "usd": usd, "ts": 1.0}).encode(),
                                          scalars, st.sampled_from(["data", "training", "nope"]))), max_size=4))
def test_ledger_lines(tmp_path_factory, lines):
    """A ledger with any lines: spent is a finite amount >= 0, or one line names the bad record."""
    root = tmp_path_factory.mktemp("l")
    (root / "ledger").mkdir()
    (root / "ledger" / "x.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    def spent():
        total = Ledger(root / "ledger", writer="reader").spent()
        assert total >= 0 and total == total and total != float("inf")

    _only_user_errors(spent, root)


@SETTINGS
@given(body=st.one_of(raw, st.lists(st.builds(lambda v: json.dumps(v, default=str), values), max_size=4)
                      .map(lambda ls: "\n".join(ls).encode())))
def test_jsonl_records(tmp_path_factory, body):
    root = tmp_path_factory.mktemp("j")
    (root / "d.jsonl").write_bytes(body)
    _only_user_errors(lambda: read_jsonl(root / "d.jsonl"), root)


@SETTINGS
@given(config=st.one_of(raw, st.builds(lambda v: json.dumps(v, default=str).encode(), values)),
       weights=st.one_of(raw, st.binary(min_size=8, max_size=8)))
def test_config_json_and_weights(tmp_path_factory, config, weights):
    root = tmp_path_factory.mktemp("c")
    (root / "config.json").write_bytes(config)
    (root / "model.safetensors").write_bytes(weights)
    _only_user_errors(lambda: check_checkpoint(root), root)


@SETTINGS
@given(metrics=st.one_of(raw, st.builds(lambda v: json.dumps(v, default=str).encode(), values)))
def test_metrics_json(tmp_path_factory, metrics):
    root = tmp_path_factory.mktemp("m")
    (root / "train").mkdir()
    (root / "train" / "metrics.json").write_bytes(metrics)
    _only_user_errors(lambda: training_metadata(root), root)
