"""Kill tests: each phase is SIGKILLed at seeded random points, then resumed with the same command.

What must hold after every kill + resume:
- the final artifacts equal those of one uninterrupted run (same records, no duplicates; for
  training, the same weights on the deterministic CPU profile);
- a reader never sees a half-written artifact, even right after the kill;
- the ledger holds every paid request exactly once.

The default suite kills cleaning and judging here at one point each; training and generation
have their one default kill/resume where it is most like production (the 2-node train_7b
rehearsal in tests/test_sky_rehearsal.py, the generate CLI in tests/test_generate_crash.py),
so their one-point cases here run with `make test-full`, which kills every phase at >= 10 points.

Run: .venv/bin/pytest tests/test_hardening_kill.py -q            (fast subset: -m "not full")
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FULL_POINTS = 10


@pytest.fixture(scope="module")
def local_server(stateless_server):
    """Resumed must equal uninterrupted, reply for reply: a server whose greedy replies do not
    depend on what it was asked before (tests/conftest.py, stateless_server)."""
    return stateless_server


# ------------------------------------------------------------------------------------------- harness
@dataclass
class Attempt:
    delay: float
    killed: bool      # the process was still running when the signal came
    seconds: float


def run_to_end(cmd: list[str], env: dict, timeout: float = 600) -> float:
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd[2:5])} failed:\n{p.stderr[-3000:]}"
    return time.monotonic() - t0


def run_and_kill(cmd: list[str], env: dict, delay: float) -> Attempt:
    """Start the command in its own process group and SIGKILL the whole group after `delay` s."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        proc.wait(timeout=delay)
        return Attempt(delay, False, time.monotonic() - t0)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # a spot preemption: no handler runs, no finally, no flush
        proc.wait()
        return Attempt(delay, True, time.monotonic() - t0)


def kill_delays(seed: int, n: int, reference_s: float) -> list[float]:
    rng = random.Random(seed)
    return sorted(rng.uniform(0.08, 0.92) * reference_s for _ in range(n))


def kill_somewhere(cmd, env, delay) -> Attempt:
    """Kill at `delay`; if the process was already done (a faster machine), try earlier."""
    for _ in range(4):
        a = run_and_kill(cmd, env, delay)
        if a.killed:
            return a
        delay /= 2
    return a


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONDONTWRITEBYTECODE="1", **extra)
    env.pop("SHEAR_FAULT_KILL_AT_STEP", None)
    return env


def read_jsonl(p: Path) -> list[dict]:
    """Every line must be a whole JSON object: a torn line is a failure, not something to skip."""
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def visible_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


# ------------------------------------------------------------------------------------------- cleaning
CLEAN_RECORDS = 1500


def _clean_input(tmp: Path, shared_data: Path) -> Path:
    lines = (shared_data / "bench_instructions.jsonl").read_text(encoding="utf-8").splitlines()[:CLEAN_RECORDS]
    extra = lines[:80] + [json.dumps({"instruction": "Tell me a joke about cats.", "input": "",
                                      "output": "As an AI language model, I cannot tell jokes."})]
    path = tmp / "generated.jsonl"
    path.write_text("\n".join(lines + extra) + "\n", encoding="utf-8")
    return path


def _clean_cmd(inp: Path, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "lib.clean.pipeline", str(inp), "--run-dir", str(run_dir)]


def _clean_artifacts(run_dir: Path) -> dict:
    counts = json.loads((run_dir / "report" / "clean_counts.json").read_text())
    for st in counts.get("stages", []):
        st.pop("seconds", None)  # wall time differs between runs; everything else must not
    counts.pop("seconds", None)
    return {"clean": read_jsonl(run_dir / "data" / "clean.jsonl"),
            "dropped": read_jsonl(run_dir / "data" / "clean_dropped.jsonl"), "counts": counts}


def _check_clean_after_kill(run_dir: Path, reference: dict) -> None:
    # Right after the kill: the trainer's input is absent or whole, never half a file.
    clean = run_dir / "data" / "clean.jsonl"
    if clean.exists():
        assert read_jsonl(clean) == reference["clean"]


def _clean_case(tmp_path: Path, shared_data: Path, points: int, seed: int) -> list[Attempt]:
    inp = _clean_input(tmp_path, shared_data)
    ref_dir = tmp_path / "reference"
    ref_s = run_to_end(_clean_cmd(inp, ref_dir), _env())
    reference = _clean_artifacts(ref_dir)
    ids = [r.get("instruction") for r in reference["clean"]]
    assert len(ids) == len(set(ids)) and len(ids) < CLEAN_RECORDS + 81  # the duplicates really went
    attempts = []
    for i, delay in enumerate(kill_delays(seed, points, ref_s)):
        run_dir = tmp_path / f"killed-{i}"
        a = kill_somewhere(_clean_cmd(inp, run_dir), _env(), delay)
        attempts.append(a)
        _check_clean_after_kill(run_dir, reference)
        run_to_end(_clean_cmd(inp, run_dir), _env())
        assert _clean_artifacts(run_dir) == reference, f"cleaning killed at {a.delay:.1f}s differs after resume"
        assert visible_files(run_dir) == visible_files(ref_dir)
    return attempts


def test_cleaning_killed_once_then_rerun_equals_an_uninterrupted_run(tmp_path, shared_data):
    attempts = _clean_case(tmp_path, shared_data, points=1, seed=1)
    assert attempts[0].killed


@pytest.mark.full
def test_cleaning_killed_at_ten_points(tmp_path, shared_data):
    attempts = _clean_case(tmp_path, shared_data, points=FULL_POINTS, seed=10)
    assert sum(a.killed for a in attempts) >= FULL_POINTS - 1


# ------------------------------------------------------------------------------------------- training
TRAIN_STEPS = 8


def _train_data(tmp: Path) -> tuple[Path, Path]:
    recs = [{"id": f"r{i}", "instruction": f"Write the number {i} in words and give one fact about it.",
             "input": "" if i % 3 else f"number: {i}", "output": f"{i} is written as its word. Fact number {i * 7}.",
             "source": "kill-test", "lang": "en"} for i in range(40)]
    train, held = tmp / "train.jsonl", tmp / "heldout.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in recs[:34]))
    held.write_text("".join(json.dumps(r) + "\n" for r in recs[34:]))
    return train, held


def _train_cmd(train: Path, held: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "lib.train.sft", "--recipe", "tiny", "--data", str(train), "--heldout", str(held),
            "--output-dir", str(out / "model"), "--metrics-path", str(out / "train" / "metrics.json"),
            "--max-steps", str(TRAIN_STEPS), "--save-steps", "2", "--seed", "7"]


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        out.update(load_file(str(f)))
    assert out, f"no weights in {model_dir}"
    return out


def _same_weights(a: Path, b: Path) -> None:
    import torch

    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs after kill + resume"


def _check_train_after_kill(out: Path) -> None:
    model = out / "model"
    if model.exists():  # published models are whole: renamed in with their marker
        assert (model / ".complete").exists() and list(model.glob("*.safetensors"))


def _train_case(tmp_path: Path, points: int, seed: int) -> list[Attempt]:
    train, held = _train_data(tmp_path)
    ref = tmp_path / "reference"
    ref_s = run_to_end(_train_cmd(train, held, ref), _env())
    ref_metrics = json.loads((ref / "train" / "metrics.json").read_text())
    assert ref_metrics["global_step"] == TRAIN_STEPS
    attempts = []
    for i, delay in enumerate(kill_delays(seed, points, ref_s)):
        out = tmp_path / f"killed-{i}"
        a = kill_somewhere(_train_cmd(train, held, out), _env(), delay)
        attempts.append(a)
        _check_train_after_kill(out)
        run_to_end(_train_cmd(train, held, out), _env())
        metrics = json.loads((out / "train" / "metrics.json").read_text())
        assert metrics["global_step"] == TRAIN_STEPS
        _same_weights(ref / "model", out / "model")
        assert metrics["tuned_heldout_loss"] == pytest.approx(ref_metrics["tuned_heldout_loss"], rel=1e-6)
        shutil.rmtree(out)  # checkpoints with optimizer state add up over ten points
    return attempts


@pytest.mark.full  # the default suite's kill/resume of this phase: see the module docstring
def test_training_killed_once_then_resumed_has_the_same_weights(tmp_path):
    attempts = _train_case(tmp_path, points=1, seed=1)
    assert attempts[0].killed


@pytest.mark.full
def test_training_killed_at_ten_points(tmp_path):
    attempts = _train_case(tmp_path, points=FULL_POINTS, seed=10)
    assert sum(a.killed for a in attempts) >= FULL_POINTS - 1


# ------------------------------------------------------------------------------------------- generation
GEN_SCRIPT = """
import json, sys
from lib.core.client import Endpoint
from lib.generate import GenerateConfig, Generator, load_seed_tasks
from lib.run import RunContext
run_dir, base_url, model, budgets, seeds = sys.argv[1:6]
ctx = RunContext(run_dir, phase="data", writer="generate", budgets_path=budgets)
ep = Endpoint(base_url=base_url, model=model, price_model="gpt-4o-mini")  # priced: the ledger has real amounts
cfg = GenerateConfig(num_instructions_to_generate=1000, max_requests=int(sys.argv[6]), concurrency=1, max_tokens=32,
                     tasks_per_request=3)
print(json.dumps(Generator(run_dir, ep, load_seed_tasks(seeds), cfg, ledger=ctx.ledger, budgets=ctx.budgets,
                           show_progress=False).run()))
"""
BUDGETS = """currency: USD
phases:
  data:       {target: 1, cap: 2, warn: 0.9}
  training:   {target: 1, cap: 2, warn: 0.9}
  evaluation: {target: 1, cap: 2, warn: 0.9}
  serving:    {target: 1, cap: 1, warn: 0.9}
"""


def _ledger_api(run_dir: Path) -> list[dict]:
    """API records as every reader counts them: one per id (a re-written record counts once)."""
    from lib.budget import Ledger

    return Ledger(run_dir / "ledger", writer="kill-test-reader").records(kind="api")


def _gen_artifacts(run_dir: Path) -> dict:
    responses = read_jsonl(run_dir / "data" / "generate" / "responses.jsonl")
    records = read_jsonl(run_dir / "data" / "generated.jsonl")
    api = _ledger_api(run_dir)
    # every logged (= paid and received) reply is in the ledger exactly once, and nothing else is
    assert sorted(r["id"] for r in api) == sorted(f"api:{r['request_id']}" for r in responses)
    assert len({r["id"] for r in records}) == len(records)
    assert len({r["instruction"] for r in records}) == len(records)
    return {"responses": [(r["request_id"], r["text"], r["usage"]) for r in responses],
            "records": records, "tokens": sorted((r["id"], r["prompt_tokens"], r["completion_tokens"]) for r in api)}


def _gen_case(tmp_path: Path, server, shared_data: Path, points: int, seed: int, requests: int) -> list[Attempt]:
    script = tmp_path / "gen.py"
    script.write_text(GEN_SCRIPT)
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS)
    seeds = shared_data / "selfinstruct_seed_tasks.jsonl"

    def cmd(run_dir):
        return [sys.executable, str(script), str(run_dir), server.base_url, server.model, str(budgets), str(seeds),
                str(requests)]

    env = _env(PYTHONPATH=str(REPO))
    ref_s = run_to_end(cmd(tmp_path / "reference"), env)
    reference = _gen_artifacts(tmp_path / "reference")
    assert len(reference["responses"]) == requests
    attempts = []
    for i, delay in enumerate(kill_delays(seed, points, ref_s)):
        run_dir = tmp_path / f"killed-{i}"
        a = kill_somewhere(cmd(run_dir), env, delay)
        attempts.append(a)
        if (run_dir / "data" / "generated.jsonl").exists():  # readable right after the kill (a torn tail at most)
            lines = (run_dir / "data" / "generated.jsonl").read_text().splitlines()
            for line in lines[:-1]:
                json.loads(line)
        run_to_end(cmd(run_dir), env)
        assert _gen_artifacts(run_dir) == reference, f"generation killed at {a.delay:.1f}s differs after resume"
    return attempts


@pytest.mark.full  # the default suite's kill/resume of this phase: see the module docstring
def test_generation_killed_once_then_resumed_equals_an_uninterrupted_run(tmp_path, local_server, shared_data):
    attempts = _gen_case(tmp_path, local_server, shared_data, points=1, seed=1, requests=2)
    assert attempts[0].killed


@pytest.mark.full
def test_generation_killed_at_ten_points(tmp_path, local_server, shared_data):
    attempts = _gen_case(tmp_path, local_server, shared_data, points=FULL_POINTS, seed=10, requests=4)
    assert sum(a.killed for a in attempts) >= FULL_POINTS - 1


# ------------------------------------------------------------------------------------------- judging
JUDGE_SCRIPT = """
import sys
from lib.core.client import Endpoint
from lib.evaluate.judge import Judge, JudgeSettings, judgments_store
from lib.evaluate.questions import load_own
from lib.run import RunContext
run_dir, base_url, model, budgets, n = sys.argv[1:6]
ctx = RunContext(run_dir, phase="evaluation", writer="evaluate", budgets_path=budgets)
questions = load_own("own_en").questions[: int(n)]
answers = {"base": {q.question_id: ["I am not sure."] for q in questions},
           "tuned": {q.question_id: ["Here is a clear, complete and correct answer: " + q.turns[0][:60]]
                     for q in questions}}
judge = Judge(Endpoint(base_url=base_url, model=model), JudgeSettings(max_tokens=24, parse_retries=0),
              ledger=ctx.ledger, name="embedded-judge")
print(judge.pairwise(questions, answers, [("tuned", "base")], judgments_store(ctx.run_dir / "eval" / "judgments.jsonl")))
"""


def _judge_artifacts(run_dir: Path) -> dict:
    rows = read_jsonl(run_dir / "eval" / "judgments.jsonl")
    keys = [(r["question_id"], r["order"]) for r in rows]
    assert len(keys) == len(set(keys)), "a judgment was written twice"
    api = _ledger_api(run_dir)
    ids = [r["request_id"] for r in api]
    assert len(ids) == len(set(ids)), "a paid call was counted twice"
    assert len(api) >= sum(r["attempts"] for r in rows)  # no judgment without its ledger record
    return {"judgments": sorted((r["question_id"], r["order"], r["status"], r["reply"]) for r in rows),
            "calls": len(api)}


def _judge_case(tmp_path: Path, server, points: int, seed: int, questions: int) -> list[Attempt]:
    script = tmp_path / "judge.py"
    script.write_text(JUDGE_SCRIPT)
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS)

    def cmd(run_dir):
        return [sys.executable, str(script), str(run_dir), server.base_url, server.model, str(budgets), str(questions)]

    env = _env(PYTHONPATH=str(REPO))
    ref_s = run_to_end(cmd(tmp_path / "reference"), env)
    reference = _judge_artifacts(tmp_path / "reference")
    assert len(reference["judgments"]) == 2 * questions
    attempts = []
    for i, delay in enumerate(kill_delays(seed, points, ref_s)):
        run_dir = tmp_path / f"killed-{i}"
        a = kill_somewhere(cmd(run_dir), env, delay)
        attempts.append(a)
        run_to_end(cmd(run_dir), env)
        got = _judge_artifacts(run_dir)
        assert got["judgments"] == reference["judgments"], f"judging killed at {a.delay:.1f}s differs after resume"
        # a call killed after it was paid but before its judgment landed is paid again: at most one per kill
        assert reference["calls"] <= got["calls"] <= reference["calls"] + 1
    return attempts


def test_judging_killed_once_then_resumed_equals_an_uninterrupted_run(tmp_path, local_server):
    attempts = _judge_case(tmp_path, local_server, points=1, seed=1, questions=1)
    assert attempts[0].killed


@pytest.mark.full
def test_judging_killed_at_ten_points(tmp_path, local_server):
    attempts = _judge_case(tmp_path, local_server, points=FULL_POINTS, seed=10, questions=3)
    assert sum(a.killed for a in attempts) >= FULL_POINTS - 1
