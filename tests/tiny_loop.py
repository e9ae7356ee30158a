"""The default suite's one tiny end-to-end loop: every notebook executed once, the run shared.

`make lab` starts Jupyter in notebooks/, so every notebook must work with that working
directory and its relative path defaults (`budgets_path="budgets.yaml"` once stopped 03_train
and 04_evaluate there). The loop runs the `tiny` profile notebook by notebook with
cwd=notebooks/ and the profile's parameters (read from lib/profiles/tiny.yaml through the
runner's own merge, so the two never drift). No path parameter is passed except `run_dir`,
and that one is relative too: a sibling of the default `runs/dev` (a person's own scratch run,
which a test must not overwrite), resolved by the same rule as the default. Notebooks outside
the profile run after it. Teacher and judge are the suite's shared server, the product's own
(llama.cpp on the shipped GGUF, tests/conftest.py), and a canary key sits in OPENAI_API_KEY
the whole time: nothing the loop writes may hold it.

`tests/conftest.py` runs it once per session (fixture `tiny_loop`); each phase's notebook test
(tests/test_*_notebook.py, tests/test_serve.py), the lab checks (tests/test_notebooks_lab.py)
and the end-to-end checks (tests/test_pipeline.py) assert on that one run. The runner's own
lifecycle (its server, pipeline.json, --resume) is tested by tests/test_pipeline.py.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from lib.core.paths import NOTEBOOKS, REPO

ALL = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
# 01 generates as the profile says (12 list requests, missing outputs answered: the 135M teacher
# keeps a few records, not always the same ones: llama.cpp's sampling is not reproducible across
# runs); then the run's data/generated.jsonl is topped up with records that survive cleaning (so
# 03_train has enough to hold out whatever the teacher kept) and with planted refusals (so 02_clean
# shows what it drops). 04 judges in both modes (pairwise in both orders, and single grading).
OVERRIDES = {"04_evaluate": {"mode": "both"}}
# Notebooks outside the tiny profile, kept small; never a path. 06_serve starts its endpoint
# (serve_check, the default) on the loop's trained model, and answers its default prompts and
# conversation in 24 tokens (tests/test_notebooks_read.py reads them as a person would).
EXTRA: dict[str, dict] = {"06_serve": {"max_new_tokens": 24}}
PLANTED_REFUSALS = 4  # the first planted records of tests/test_clean_filters.py: 4 refusals/disclaimers


@dataclass
class LoopRun:
    run: Path  # REPO/runs/lab-test-<id>
    canary: str  # the OPENAI_API_KEY value while the loop ran
    server: object  # the teacher and judge (lib.core.server.LocalServer)
    failures: dict[str, str] = field(default_factory=dict)  # notebook -> its error
    params: dict[str, dict] = field(default_factory=dict)  # notebook -> the parameters it was given
    teacher_records: list[dict] = field(default_factory=list)  # data/generated.jsonl as 01_generate left it
    topped_up: list[dict] = field(default_factory=list)  # records appended after 01_generate
    planted: list[dict] = field(default_factory=list)  # the planted refusals among them
    votes: list[dict] = field(default_factory=list)  # a reviewer's votes left after 04_evaluate (eval/human.jsonl)

    def executed(self, name: str) -> Path:
        path = self.run / f"{name}.ipynb"
        assert name not in self.failures, f"{name} failed with cwd=notebooks/: {self.failures[name]}"
        assert path.is_file(), f"{name} never ran: an earlier notebook failed ({self.failures})"
        return path

    def notebook(self, name: str):
        return nbformat.read(self.executed(name), as_version=4)

    def outputs(self, name: str) -> list[dict]:
        return [o for c in self.notebook(name).cells if c.cell_type == "code" for o in c.get("outputs", [])]


def plan(run_rel: str, server) -> list[tuple[str, dict]]:
    """(notebook, parameters) in run order: the tiny profile's, then the notebooks outside it."""
    from lib.core.params import declared_params
    from lib.core.profiles import load_profile, notebook_params
    from lib.pipeline.preflight import SHARED_ENDPOINT_PARAMS

    steps = []
    for name, path, params in notebook_params(load_profile("tiny"), {}):
        declared = declared_params(path)
        shared = {k: v for base, model in SHARED_ENDPOINT_PARAMS
                  for k, v in ((base, server.base_url), (model, server.model)) if k in declared}
        steps.append((name, {**shared, **params, **OVERRIDES.get(name, {}), "run_dir": run_rel}))
    steps += [(name, {**EXTRA.get(name, {}), "run_dir": run_rel}) for name in ALL if name not in dict(steps)]
    return steps


def _top_up(loop: LoopRun) -> None:
    from tests.test_clean_filters import good_records, planted_records

    generated = loop.run / "data" / "generated.jsonl"
    loop.teacher_records = [json.loads(line) for line in generated.read_text(encoding="utf-8").splitlines()]
    loop.planted = [{k: v for k, v in r.items() if k != "expect"} for r in planted_records()[:PLANTED_REFUSALS]]
    assert all(r["expect"] == "refusal" for r in planted_records()[:PLANTED_REFUSALS])
    loop.topped_up = good_records() + loop.planted
    with open(generated, "a", encoding="utf-8") as f:
        for rec in loop.topped_up:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def _review(loop: LoopRun) -> None:
    """A reviewer votes on every item 04_evaluate left, through 07_review's own session (the votes
    land in eval/human.jsonl as a person's would): 08_prefer joins them as pairs of their own, so
    its DPO step has pairs whatever the 135M judge keeps (its verdicts are mostly ties and flips)."""
    from lib.evaluate.review import ReviewConfig, ReviewSession, load_review_inputs, review_items

    ev = loop.run / "eval"
    inputs = load_review_inputs(ev)
    items = review_items(inputs.qset.questions, inputs.answers, inputs.pairs, inputs.judgments, judge=inputs.judge)
    session = ReviewSession(items, ev / "human.jsonl", ReviewConfig(reviewer="loop-reviewer", seed=0))
    while session.queue:
        loop.votes.append(session.vote("A"))


def execute(loop: LoopRun) -> None:
    """Every notebook in turn from notebooks/; the first failure stops the loop (later phases need it)."""
    import papermill

    from lib.pipeline.execute import kernel_config  # the runner's kernel settings

    run_rel = str(loop.run.relative_to(REPO))
    for name, params in plan(run_rel, loop.server):
        assert not any(k.endswith(("_path", "_dir")) and k != "run_dir" for k in params), params
        loop.params[name] = params
        try:
            papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(loop.run / f"{name}.ipynb"),
                                       parameters=params, cwd=str(NOTEBOOKS), kernel_name="python3",
                                       progress_bar=False, config=kernel_config())
        except papermill.PapermillExecutionError as e:
            loop.failures[name] = f"{e.ename}: {(e.evalue or '').strip()[-300:]}"
            return
        if name == "01_generate":
            _top_up(loop)
        if name == "04_evaluate":
            _review(loop)


@contextmanager
def tiny_loop(server) -> Iterator[LoopRun]:
    """runs/lab-test-<id>/ with every notebook executed there from notebooks/; removed afterwards."""
    loop = LoopRun(run=REPO / "runs" / f"lab-test-{uuid.uuid4().hex[:8]}",
                   canary="sk-canary-" + os.urandom(12).hex(), server=server)
    old_key = os.environ.get("OPENAI_API_KEY")
    loop.run.mkdir(parents=True)  # papermill writes the executed notebook there, as the runner does
    try:
        os.environ["OPENAI_API_KEY"] = loop.canary  # the kernels inherit it; no notebook may write it down
        try:
            execute(loop)
        finally:
            if old_key is None:
                os.environ.pop("OPENAI_API_KEY", None)
            else:
                os.environ["OPENAI_API_KEY"] = old_key
        yield loop
    finally:
        shutil.rmtree(loop.run, ignore_errors=True)
