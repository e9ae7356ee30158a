"""The bad-input corpus: every way a user can hand the pipeline a broken file, config or endpoint.

Each case runs a real command-line entry point in a subprocess (`python -m lib.pipeline`,
`python -m lib.budget`, `python -m lib.clean.pipeline`, ...) in a scratch directory and checks
what a user would see:

- a non-zero exit,
- stderr's last non-empty line is ONE clear message starting with `error:` (no traceback wall,
  not a 30 MB record echoed back),
- nothing that existed before was changed, and no half-written file was left behind.

Run: .venv/bin/pytest tests/test_hardening_badinput.py -q      (add -k budgets, -k pipeline, ...)
"""
from __future__ import annotations

import codecs
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lib.testing.faultproxy import FaultProxy

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

GOOD_BUDGETS = """currency: USD
phases:
  data:       {target: 5, cap: 6, warn: 0.8}
  training:   {target: 3, cap: 4, warn: 0.8}
  evaluation: {target: 1, cap: 2, warn: 0.8}
  serving:    {target: 1, cap: 1, warn: 0.8}
"""
REC = {"id": "r1", "instruction": "Name three primary colors.", "input": "", "output": "Red, blue and yellow.",
       "source": "test", "lang": "en"}
GOOD_JSONL = "".join(json.dumps({**REC, "id": f"r{i}", "instruction": f"{REC['instruction']} ({i})"}) + "\n"
                     for i in range(3))


def _budgets_with(**phase_overrides) -> str:
    return GOOD_BUDGETS.replace("data:       {target: 5, cap: 6, warn: 0.8}",
                                "data:       {" + ", ".join(f"{k}: {v}" for k, v in phase_overrides.items()) + "}")


def _profile(teacher=None, notebooks=None, **extra) -> str:
    import yaml

    prof = {"description": "bad-input case", "notebooks": notebooks or {"01_generate": {}}}
    if teacher is not None:
        prof["teacher"] = teacher
    prof.update(extra)
    return yaml.safe_dump(prof)


@dataclass
class Case:
    id: str
    module: str                          # python -m <module>
    args: list[str]                      # {tmp} -> the scratch directory, {proxy} -> a fault proxy's base URL
    expect: str                          # regex the error line must match (after "error: ")
    files: dict[str, str | bytes] = field(default_factory=dict)  # written under {tmp} before the run
    env: dict[str, str] = field(default_factory=dict)
    needs: tuple[str, ...] = ()          # repo files the case needs (a phase still being written)
    may_create: tuple[str, ...] = ()     # globs under {tmp} the command may create (e.g. a run's state)
    fsize: int | None = None             # RLIMIT_FSIZE in bytes: a simulated full disk
    proxy_key: str | None = None         # start a FaultProxy that accepts only this key
    readonly: str | None = None          # a directory under {tmp} made read-only for the run (see `_readonly`)
    hold_port: bool = False              # {port} -> a port another socket is listening on
    tiny_run: str | None = None          # a directory under {tmp} filled with a trained tiny run (real weights)


def _safetensors(n_floats: int, keep: int | None = None) -> bytes:
    """A real safetensors file of one float32 tensor, cut to `keep` bytes of data when given."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, 4 * n_floats]}}).encode()
    data = bytes(4 * n_floats)
    return struct.pack("<Q", len(header)) + header + data[: len(data) if keep is None else keep]


def _fake_run(config: str = '{"model_type": "llama"}', weights: bytes = b"") -> dict[str, str | bytes]:
    """A run as training leaves it (metadata, finished model/), enough for every check that comes
    before a model loads; its weights are `weights` (default: a whole small file)."""
    return {"run/train/metrics.json": json.dumps({"format": "alpaca", "recipe": "tiny", "model": "tiny:llama"}),
            "run/model/.complete": json.dumps({"recipe": "tiny"}) + "\n",
            "run/model/config.json": config,
            "run/model/model.safetensors": weights or _safetensors(256)}


NB = ("notebooks/01_generate.ipynb",)
ALL_NB = ("notebooks/01_generate.ipynb", "notebooks/02_clean.ipynb", "notebooks/03_train.ipynb",
          "notebooks/04_evaluate.ipynb")
HUGE = 30 * 1024 * 1024  # one 30 MB record

CASES: list[Case] = [
    # ------------------------------------------------------------------ budgets.yaml (lib.budget check)
    Case("budgets-missing", "lib.budget", ["check", "{tmp}/nope.yaml"], r"budgets\.yaml not found at .*nope\.yaml"),
    Case("budgets-empty", "lib.budget", ["check", "{tmp}/b.yaml"], r"missing key 'phases'", files={"b.yaml": ""}),
    Case("budgets-bad-yaml", "lib.budget", ["check", "{tmp}/b.yaml"], r"invalid YAML at line \d+",
         files={"b.yaml": "phases:\n  data: {target: 5, cap: 6\n  training: [\n"}),
    Case("budgets-a-list", "lib.budget", ["check", "{tmp}/b.yaml"], r"expected a mapping", files={"b.yaml": "- 1\n- 2\n"}),
    Case("budgets-top-key-typo", "lib.budget", ["check", "{tmp}/b.yaml"], r"unknown key 'phase'.*did you mean 'phases'",
         files={"b.yaml": GOOD_BUDGETS.replace("phases:", "phase:")}),
    Case("budgets-phase-typo", "lib.budget", ["check", "{tmp}/b.yaml"], r"unknown key phases\.'trainig'.*'training'",
         files={"b.yaml": GOOD_BUDGETS.replace("training:", "trainig:")}),
    Case("budgets-negative-cap", "lib.budget", ["check", "{tmp}/b.yaml"], r"phases\.data\.cap is negative",
         files={"b.yaml": _budgets_with(target=0, cap=-5)}),
    Case("budgets-cap-below-target", "lib.budget", ["check", "{tmp}/b.yaml"], r"phases\.data\.cap \(4\) is below its target",
         files={"b.yaml": _budgets_with(target=5, cap=4)}),
    Case("budgets-amount-with-dollar", "lib.budget", ["check", "{tmp}/b.yaml"], r"phases\.data\.target must be a number",
         files={"b.yaml": _budgets_with(target='"$5"', cap=6)}),
    Case("budgets-warn-above-cap", "lib.budget", ["check", "{tmp}/b.yaml"], r"phases\.data\.warn .* above the cap",
         files={"b.yaml": _budgets_with(target=5, cap=6, warn=60)}),
    Case("budgets-currency", "lib.budget", ["check", "{tmp}/b.yaml"], r"currency 'EUR' is not supported",
         files={"b.yaml": GOOD_BUDGETS.replace("USD", "EUR")}),
    Case("budgets-missing-phase", "lib.budget", ["check", "{tmp}/b.yaml"], r"missing key phases\.serving",
         files={"b.yaml": "\n".join(l for l in GOOD_BUDGETS.splitlines() if "serving" not in l)}),
    Case("budgets-price-missing-output", "lib.budget", ["check", "{tmp}/b.yaml"], r"missing key prices\.my-teacher\.output",
         files={"b.yaml": GOOD_BUDGETS + "prices:\n  my-teacher: {input: 0.3}\n"}),
    Case("budgets-latin1", "lib.budget", ["check", "{tmp}/b.yaml"], r"(UTF-8|utf-8|encoding)",
         files={"b.yaml": ("# budgets for the équipe\n" + GOOD_BUDGETS).encode("latin-1")}),
    Case("budgets-utf16-bom", "lib.budget", ["check", "{tmp}/b.yaml"], r"(UTF-8|utf-8|UTF-16|encoding)",
         files={"b.yaml": codecs.BOM_UTF16_LE + GOOD_BUDGETS.encode("utf-16-le")}),
    Case("budgets-cap-below-spent", "lib.budget", ["check", "{tmp}/b.yaml", "--run", "{tmp}/run"],
         r"phases\.data\.cap .* below what this run already spent",
         files={"b.yaml": GOOD_BUDGETS,
                "run/ledger/generate.jsonl": json.dumps({"id": "api:x", "kind": "api", "phase": "data", "usd": 9.5,
                                                         "ts": 1.0}) + "\n"}),
    # ------------------------------------------------------------------ run directories (lib.budget report/spent)
    Case("report-no-such-run", "lib.budget", ["report", "{tmp}/runs/typo", "--budgets", "{tmp}/b.yaml"],
         r"typo", files={"b.yaml": GOOD_BUDGETS}),
    Case("spent-no-such-run", "lib.budget", ["spent", "{tmp}/runs/typo"], r"typo"),
    Case("report-full-disk", "lib.budget", ["report", "{tmp}/run", "--budgets", "{tmp}/b.yaml"],
         r"(disk|space|[Ff]ile too large|EFBIG|ENOSPC)", fsize=2048,
         files={"b.yaml": GOOD_BUDGETS, "run/report/budget.md": "# the previous report, must survive\n",
                "run/ledger/generate.jsonl": "".join(json.dumps({
                    "id": f"api:{i}", "kind": "api", "phase": "data", "usd": 0.001, "ts": 1.0 + i,
                    "prompt_tokens": 100, "completion_tokens": 50, "model": "gpt-4o-mini",
                    "usd_reference": 0.001}) + "\n" for i in range(20))}),
    # ------------------------------------------------------------------ profiles and parameters (lib.pipeline.runner)
    Case("pipeline-unknown-profile", "lib.pipeline", ["run", "--profile", "no-such-profile"],
         r"no profile 'no-such-profile': use one of"),
    Case("pipeline-profile-bad-yaml", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml"], r"p\.yaml is not valid YAML",
         files={"p.yaml": "notebooks:\n  01_generate: {num_instructions: 4\n"}),
    Case("pipeline-profile-key-typo", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml"], r"unknown key\(s\) \['notebook'\]",
         files={"p.yaml": "notebook:\n  01_generate: {}\n"}),
    Case("pipeline-profile-no-notebooks", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml"],
         r"`notebooks` must map notebook names", files={"p.yaml": "description: nothing to run\n"}),
    Case("pipeline-profile-missing-notebook", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml"],
         r"runs 07_nothing but .*07_nothing\.ipynb does not exist", files={"p.yaml": _profile(notebooks={"07_nothing": {}})}),
    Case("pipeline-set-malformed", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml", "--set", "num_instructions"],
         r"--set 'num_instructions' is malformed", files={"p.yaml": _profile()}),
    Case("pipeline-set-unknown-notebook", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml", "--set", "09_x.a=1"],
         r"--set names notebook\(s\) \['09_x'\]", files={"p.yaml": _profile()}),
    Case("pipeline-set-unknown-param", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml", "--set", "01_generate.num_instructons=5"],
         r"01_generate has no parameter\(s\) \['num_instructons'\]", files={"p.yaml": _profile()}, needs=NB),
    Case("pipeline-secret-as-parameter", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml", "--set", "01_generate.api_key=sk-oops"],
         r"(looks like a secret|no parameter\(s\) \['api_key'\])", files={"p.yaml": _profile()}, needs=NB),
    Case("pipeline-budgets-missing", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml", "--budgets", "{tmp}/none.yaml"],
         r"budgets\.yaml not found at .*none\.yaml", files={"p.yaml": _profile()}, needs=NB),
    Case("pipeline-budgets-invalid", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml", "--budgets", "{tmp}/b.yaml"],
         r"phases\.data\.cap is negative", files={"p.yaml": _profile(), "b.yaml": _budgets_with(target=0, cap=-1)}, needs=NB),
    Case("pipeline-teacher-unreachable", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml"],
         r"cannot reach the teacher at http://127\.0\.0\.1:9/v1",
         files={"p.yaml": _profile(teacher={"base_url": "http://127.0.0.1:9/v1", "model": "m"})}, needs=NB),
    Case("pipeline-teacher-no-key", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml"],
         r"no API key for https://api\.example\.invalid/v1: export SHEAR_BADINPUT_KEY",
         files={"p.yaml": _profile(teacher={"base_url": "https://api.example.invalid/v1", "model": "gpt-4o-mini",
                                            "api_key_env": "SHEAR_BADINPUT_KEY"})}, needs=NB),
    Case("pipeline-teacher-wrong-key", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml"],
         r"refused the key in SHEAR_BADINPUT_KEY",
         files={"p.yaml": _profile(teacher={"base_url": "{proxy}", "model": "gpt-4o-mini", "api_key_env": "SHEAR_BADINPUT_KEY"})},
         env={"SHEAR_BADINPUT_KEY": "sk-wrong"}, proxy_key="sk-right", needs=NB),
    Case("pipeline-resume-unknown", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml", "--resume", "never-ran"],
         r"nothing to resume at .*never-ran", files={"p.yaml": _profile()}, needs=NB),
    Case("pipeline-run-id-exists", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml", "--run-id", "mine"],
         r"mine already exists: pick another --run-id",
         files={"p.yaml": _profile(), "runs/mine/data/generated.jsonl": GOOD_JSONL}, needs=NB),
    Case("pipeline-run-id-path", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml", "--run-id", "../escape"],
         r"run id '\.\./escape' is not a plain name", files={"p.yaml": _profile()}, needs=NB),
    # ------------------------------------------------------------------ data files (lib.clean.pipeline)
    Case("clean-missing-input", "lib.clean.pipeline", ["{tmp}/nope.jsonl", "--run-dir", "{tmp}/run"],
         r"input .*nope\.jsonl does not exist"),
    Case("clean-malformed-jsonl-line", "lib.clean.pipeline", ["{tmp}/in.jsonl", "--run-dir", "{tmp}/run"],
         r"in\.jsonl:2: invalid JSON", files={"in.jsonl": GOOD_JSONL.replace("\n", "\n{\"id\": \"r9\", \"instr\n", 1)}),
    Case("clean-wrong-schema", "lib.clean.pipeline", ["{tmp}/in.jsonl", "--run-dir", "{tmp}/run"],
         r"in\.jsonl:1: .*(instruction|field|key)",
         files={"in.jsonl": json.dumps({"prompt": "hi", "completion": "hello"}) + "\n" + GOOD_JSONL}),
    Case("clean-not-records", "lib.clean.pipeline", ["{tmp}/in.jsonl", "--run-dir", "{tmp}/run"],
         r"in\.jsonl:1: ", files={"in.jsonl": "[1, 2, 3]\n" + GOOD_JSONL}),
    Case("clean-empty-file", "lib.clean.pipeline", ["{tmp}/in.jsonl", "--run-dir", "{tmp}/run"],
         r"(empty|no records)", files={"in.jsonl": ""}),
    Case("clean-json-not-list", "lib.clean.pipeline", ["{tmp}/in.json", "--run-dir", "{tmp}/run"],
         r"must hold a list of records", files={"in.json": json.dumps({"instruction": "x"})}),
    Case("clean-latin1", "lib.clean.pipeline", ["{tmp}/in.jsonl", "--run-dir", "{tmp}/run"],
         r"(UTF-8|utf-8|encoding)",
         files={"in.jsonl": (json.dumps({**REC, "output": "Café, crème brûlée."}, ensure_ascii=False) + "\n").encode("latin-1")}),
    Case("clean-utf16-bom", "lib.clean.pipeline", ["{tmp}/in.jsonl", "--run-dir", "{tmp}/run"],
         r"(UTF-8|utf-8|UTF-16|encoding)", files={"in.jsonl": codecs.BOM_UTF16_LE + GOOD_JSONL.encode("utf-16-le")}),
    Case("clean-huge-bad-record", "lib.clean.pipeline", ["{tmp}/in.jsonl", "--run-dir", "{tmp}/run"],
         r"in\.jsonl:2: ",
         files={"in.jsonl": GOOD_JSONL.splitlines(True)[0]
                + json.dumps({**REC, "instruction": ["x" * HUGE]}) + "\n"}),
    Case("clean-keeps-previous-output", "lib.clean.pipeline", ["{tmp}/in.jsonl", "--run-dir", "{tmp}/run"],
         r"in\.jsonl:4: invalid JSON",
         files={"in.jsonl": GOOD_JSONL + "{not json}\n", "run/data/clean.jsonl": GOOD_JSONL,
                "run/report/clean.md": "# earlier report\n"}),
    # ------------------------------------------------------------------ SkyPilot tasks (lib.launch.estimate)
    Case("sky-task-missing", "lib.launch", ["{tmp}/nope.yaml", "--dry-run"], r"task YAML .*nope\.yaml not found: pass one of"),
    Case("sky-task-bad-yaml", "lib.launch", ["{tmp}/t.yaml", "--dry-run"], r"t\.yaml is not valid YAML",
         files={"t.yaml": "name: x\nresources: {accelerators: A100:8\n"}),
    Case("sky-task-key-typo", "lib.launch", ["{tmp}/t.yaml", "--dry-run"], r"did you mean 'resources'",
         files={"t.yaml": "@sky/train_7b.yaml:s/\nresources:/\nresorces:/"}),
    Case("sky-task-resource-typo", "lib.launch", ["{tmp}/t.yaml", "--dry-run"], r"did you mean 'accelerators'",
         files={"t.yaml": "@sky/train_7b.yaml:s/\n  accelerators: A100-80GB:8/\n  acclerators: A100-80GB:8/"}),
    Case("sky-task-wrong-type", "lib.launch", ["{tmp}/t.yaml", "--dry-run"], r"num_nodes",
         files={"t.yaml": "@sky/train_7b.yaml:s/num_nodes: 1/num_nodes: two/"}),
    Case("sky-task-phase-typo", "lib.launch", ["{tmp}/t.yaml", "--dry-run"], r"unknown budget phase 'trainig'",
         files={"t.yaml": "@sky/train_7b.yaml:s/BUDGET_PHASE: training/BUDGET_PHASE: trainig/"}),
    # ------------------------------------------------------------------ issue 23: each bad input it lists
    # --set typed against the notebook's parameters cell before the first phase, even with --redo
    # on a run whose 03_train.ipynb and pipeline.json must survive untouched
    Case("pipeline-set-wrong-type-redo", "lib.pipeline",
         ["run", "--profile", "{tmp}/p.yaml", "--run-dir", "{tmp}/run", "--redo", "--set", "03_train.max_steps=abc"],
         r"03_train\.max_steps='abc' is not an int: the notebook declares `max_steps: int`",
         files={"p.yaml": _profile(notebooks={"01_generate": {}, "03_train": {}}),
                "run/03_train.ipynb": '{"cells": [], "note": "the earlier run"}',
                "run/pipeline.json": json.dumps({"phases": {"03_train": {"status": "done"}}})}, needs=ALL_NB),
    Case("pipeline-set-bool-for-float", "lib.pipeline",
         ["run", "--profile", "{tmp}/p.yaml", "--set", "03_train.learning_rate=yes"],
         r"03_train\.learning_rate=True is not a float", files={"p.yaml": _profile(notebooks={"03_train": {}})},
         needs=ALL_NB),
    Case("pipeline-profile-wrong-type", "lib.pipeline", ["run", "--profile", "{tmp}/p.yaml"],
         r"01_generate\.num_instructions_to_generate='many' is not an int",
         files={"p.yaml": _profile(notebooks={"01_generate": {"num_instructions_to_generate": "many"}})}, needs=NB),
    # ports: out of range (uvicorn serves 70000 as 70000 % 65536) and busy, before the model is touched
    Case("serve-port-70000", "lib.serve", ["{tmp}/run", "--port", "70000"],
         r"port 70000 is not a TCP port: give a number from 1 to 65535", files=_fake_run()),
    Case("serve-busy-port", "lib.serve", ["{tmp}/run", "--port", "{port}"],
         r"port \d+ on 127\.0\.0\.1 is in use by another program", files=_fake_run(), hold_port=True),
    # the model's own files: garbage config.json, weights cut short (they said "run make setup")
    Case("serve-garbage-config", "lib.serve", ["{tmp}/run"], r"config\.json is not valid JSON .*re-run training",
         files=_fake_run(config='{"model_type": "llama", "hidden_size": ')),
    Case("export-garbage-config", "lib.serve.export", ["{tmp}/run"], r"config\.json is not valid JSON",
         files=_fake_run(config="\x00\x01 not json")),
    Case("export-config-not-a-model", "lib.serve.export", ["{tmp}/run"], r"config\.json is not a model config",
         files=_fake_run(config="[1, 2, 3]")),
    Case("serve-truncated-weights", "lib.serve", ["{tmp}/run"],
         r"model\.safetensors is truncated \(1,\d+ of 4,\d+ bytes\)", files=_fake_run(weights=_safetensors(1024, 1000))),
    Case("export-truncated-weights", "lib.serve.export", ["{tmp}/run"], r"model\.safetensors is truncated",
         files=_fake_run(weights=_safetensors(1024, 10))),
    Case("export-weights-not-safetensors", "lib.serve.export", ["{tmp}/run"],
         r"model\.safetensors is truncated or not a safetensors file", files=_fake_run(weights=b"GGUF" + bytes(64))),
    # where export writes: a read-only directory, a disk that fills up (it said "architecture unsupported")
    Case("export-readonly-dir", "lib.serve.export", ["{tmp}/run"],
         r"the export directory .*export is not writable \(Read-only file system|Permission denied",
         files={**_fake_run(), "run/export/.keep": ""}, readonly="run/export"),
    Case("export-full-disk", "lib.serve.export", ["{tmp}/run", "--quant", "F16"],
         r"disk full while converting .* free space, then export again", tiny_run="run", fsize=5_000_000,
         may_create=("run/serve/checkpoint/*", "run/logs/export-convert.log")),
    # lib.launch --data: binary (a traceback) and empty (priced at $2.60 for zero steps)
    Case("launch-data-binary", "lib.launch", ["sky/train_7b.yaml", "--dry-run", "--data", "{tmp}/clean.jsonl"],
         r"clean\.jsonl is binary, not JSON lines", files={"clean.jsonl": bytes(range(128, 256)) * 16}),
    Case("launch-data-empty", "lib.launch", ["sky/train_7b.yaml", "--dry-run", "--data", "{tmp}/clean.jsonl"],
         r"clean\.jsonl is empty", files={"clean.jsonl": ""}),
    # a ledger line with negative dollars would hide spend from every cap
    Case("ledger-negative-usd", "lib.budget", ["spent", "{tmp}/run"], r"record 'api:1' has usd '-5\.0', not an amount >= 0",
         files={"run/ledger/generate.jsonl": json.dumps({"id": "api:1", "kind": "api", "phase": "data", "usd": -5.0,
                                                         "ts": 1.0}) + "\n"}),
    Case("ledger-nan-usd", "lib.budget", ["check", "{tmp}/b.yaml", "--run", "{tmp}/run"], r"has usd 'nan'",
         files={"b.yaml": GOOD_BUDGETS, "run/ledger/generate.jsonl": '{"id": "api:2", "kind": "api", "phase": "data", '
                                                                     '"usd": NaN, "ts": 1.0}\n'}),
]


# Cases that fail today because of a reported bug in code this suite does not own. They are
# strict xfails: the day the bug is fixed the case passes, xfail turns into a failure, and
# the entry must be deleted here (and the row in docs/reliability.md turns green).
KNOWN_BUGS: dict[str, str] = {}


# ---------------------------------------------------------------------------------------------- harness
def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _missing(case: Case) -> str | None:
    """What the case needs that is not in the tree (a renamed module, a moved file), or None."""
    missing = [n for n in case.needs if not (REPO / n).exists()]
    if missing:
        return f"needs {', '.join(missing)}"
    try:
        spec = importlib.util.find_spec(case.module)
        if spec is not None and spec.submodule_search_locations is not None:  # a package: needs __main__
            spec = importlib.util.find_spec(f"{case.module}.__main__")
    except ImportError:
        spec = None
    if spec is None:
        return f"`python -m {case.module}` does not exist"
    return None


def prepare(case: Case, tmp: Path, proxy_url: str = "") -> None:
    for rel, content in case.files.items():
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str) and content.startswith("@"):
            # "@<repo file>:s/<old>/<new>/": a shipped file with one typo put in
            src, _, sub = content[1:].partition(":s/")
            old, new = sub.rstrip("/").split("/", 1)
            text = (REPO / src).read_text()
            assert old in text, f"{src} no longer contains {old!r}: update the case"
            content = text.replace(old, new, 1)
        if isinstance(content, str):
            content = content.replace("{proxy}", proxy_url).encode("utf-8")
        p.write_bytes(content)


def _readonly(case: Case, tmp: Path, argv: list[str]) -> list[str]:
    """Run `argv` with `case.readonly` read-only. As root, permissions do not stop writes, so the
    directory becomes a read-only tmpfs in a private mount namespace (util-linux `unshare -m`:
    the mount is gone when the command ends); otherwise its mode is 0555 (restored by the test)."""
    if not case.readonly:
        return argv
    d = tmp / case.readonly
    if os.geteuid() != 0:
        d.chmod(0o555)
        return argv
    return ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o ro,size=64k tmpfs "$0" && exec "$@"', str(d), *argv]


def run_case(case: Case, tmp: Path, proxy_url: str = "", port: int = 0) -> subprocess.CompletedProcess:
    args = [a.replace("{tmp}", str(tmp)).replace("{proxy}", proxy_url).replace("{port}", str(port)) for a in case.args]
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update(SHEAR_RUNS=str(tmp / "runs"), HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1", **case.env)
    if case.fsize is not None:  # `make coverage` would measure the child too, and its data file hits the limit
        env = {k: v for k, v in env.items() if not k.startswith("COVERAGE_")}

    def limits():
        if case.fsize is not None:  # the kernel refuses to grow any file past this: EFBIG, like a full disk
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.fsize, case.fsize))

    return subprocess.run(_readonly(case, tmp, [PY, "-m", case.module, *args]), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=180, preexec_fn=limits, errors="replace")


@contextlib.contextmanager
def _no_proxy():
    yield None


@contextlib.contextmanager
def _held_port(hold: bool):
    """A port that another program listens on (the busy-port case), or 0."""
    if not hold:
        yield 0
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory) -> Path:
    """A run directory as training leaves it, with a real tiny LLaMA (12 MB, random weights) that
    llama.cpp's converter can convert: the full-disk case needs the conversion to start."""
    from transformers import AutoTokenizer

    from lib.core.model import embedded_model_dir
    from lib.train.tiny import tiny_model

    run = tmp_path_factory.mktemp("tiny-run") / "run"
    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    tiny_model("llama", tok, seed=0).save_pretrained(run / "model")
    tok.save_pretrained(run / "model")
    for rel, content in _fake_run().items():
        if rel.endswith(".json") and "config" not in rel or rel.endswith(".complete"):
            (run / rel.removeprefix("run/")).parent.mkdir(parents=True, exist_ok=True)
            (run / rel.removeprefix("run/")).write_text(content)
    return run


def check_one_clear_line(p: subprocess.CompletedProcess, expect: str) -> str:
    assert p.returncode != 0, f"exit 0 on bad input; stdout: {p.stdout[-500:]}"
    assert "Traceback" not in p.stderr, f"traceback instead of one line:\n{p.stderr[-3000:]}"
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    last = lines[-1]
    assert last.startswith("error: "), f"last stderr line is not `error: ...`: {last[:500]!r}"
    assert len(last) < 600, f"the message is a wall ({len(last)} chars): {last[:300]}..."
    assert re.search(expect, last), f"{last!r} does not match {expect!r}"
    return last


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[c.id])] if c.id in KNOWN_BUGS else [])
    for c in CASES])
def test_bad_input_gets_one_clear_line_and_changes_nothing(case: Case, tmp_path: Path, request):
    missing = _missing(case)
    # a renamed module fails here instead of silently skipping the case (and its guarantee)
    assert not missing, f"{case.id}: {missing}: update the case to the module's new name"
    tmp = tmp_path / "work"
    tmp.mkdir()
    if case.tiny_run:
        shutil.copytree(request.getfixturevalue("tiny_trained_run"), tmp / case.tiny_run)
    with (FaultProxy(None, require_key=case.proxy_key) if case.proxy_key else _no_proxy() as proxy,
          _held_port(case.hold_port) as port):
        url = proxy.base_url if proxy else ""
        prepare(case, tmp, url)
        before = _snapshot(tmp)
        try:
            p = run_case(case, tmp, url, port)
        finally:
            if case.readonly:
                (tmp / case.readonly).chmod(0o755)
    check_one_clear_line(p, case.expect)
    after = _snapshot(tmp)
    changed = [rel for rel, h in before.items() if after.get(rel) != h]
    assert not changed, f"pre-existing file(s) changed or removed: {changed}"
    created = [rel for rel in after if rel not in before
               and not any(Path(rel).match(g) for g in case.may_create)]
    assert not created, f"bad input left files behind: {created}"
    leftovers = [str(d.relative_to(tmp)) for d in tmp.rglob("*") if d.is_dir() and not any(d.iterdir())]
    assert not leftovers, f"bad input left empty directories behind: {leftovers}"


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


def test_06_serve_with_a_missing_run_refuses_and_creates_nothing(tmp_path: Path):
    """Issue 23: 06_serve on `runs/does-not-exist` created that directory (the run context came first).
    Executed as papermill runs it: the first cell after the parameters stops with the one line,
    and neither the run directory nor anything under runs/ appears."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    name = f"does-not-exist-{os.getpid()}"
    runs = REPO / "runs"
    before = sorted(runs.iterdir()) if runs.exists() else None
    with pytest.raises(PapermillExecutionError) as e:
        papermill.execute_notebook(str(REPO / "notebooks" / "06_serve.ipynb"), str(tmp_path / "06.ipynb"),
                                   parameters={"run_dir": f"runs/{name}"}, cwd=str(REPO), kernel_name="python3",
                                   progress_bar=False)
    assert e.value.ename == "UserError" and f"no run directory at {REPO}/runs/{name}:" in e.value.evalue, e.value.evalue
    assert not (runs / name).exists()
    assert (sorted(runs.iterdir()) if runs.exists() else None) == before
