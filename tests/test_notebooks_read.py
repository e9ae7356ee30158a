"""06_serve and 07_review as a person reads them: executed from notebooks/ (where `make lab`
starts Jupyter), their saved outputs hold no `nan`, no warning and no empty answer; 06's answers
stream into one growing output per turn and are the endpoint's own; 07 shows real timing
figures or none, and whole scorecard reasons.

06 is the shared tiny loop's run of it (tests/tiny_loop.py) on the model the loop's 03 trained
from the embedded SmolLM2-135M-Instruct: a real model, so an empty answer means something. 07 runs twice on a reviewed run as 04_evaluate and two reviewers leave it
(tests/test_eval_review.py::make_reviewed_run), once with the votes and once before anyone voted.

    .venv/bin/python -m pytest tests/test_notebooks_read.py -q
"""
from __future__ import annotations

import ast
import html
import json
import re
from pathlib import Path

import nbformat
import pytest

from lib.core.paths import NOTEBOOKS
from lib.evaluate.review import load_votes
from tests.browser import png_size
from tests.test_eval_review import make_reviewed_run

pytestmark = pytest.mark.timeout(1800)
CONVERSATION = ["Name a fruit.", "What colour is it?"]
PROMPTS = ["Give three tips for staying healthy.", "What is the capital of France?"]


def _execute(name: str, out: Path, **params) -> nbformat.NotebookNode:
    import papermill

    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), parameters=params, cwd=str(NOTEBOOKS),
                               kernel_name="python3", progress_bar=False)
    return nbformat.read(out, as_version=4)


def _outputs(nb) -> list[tuple[int, dict]]:
    return [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.get("outputs", [])]


def _text(o: dict) -> str:
    """Everything a reader sees of one output, as text (stream, plain, markdown and HTML)."""
    if o.get("output_type") == "stream":
        return o.get("text", "")
    if o.get("output_type") == "error":
        return f"{o.get('ename')}: {o.get('evalue')}"
    data = o.get("data", {})
    return "\n".join(data[k] for k in ("text/plain", "text/markdown", "text/html") if isinstance(data.get(k), str))


def reading_problems(nb) -> list[str]:
    """What a reader should never see: stderr, a warning, `nan` (NaN in a table, "median nan s"),
    a progress bar."""
    problems = []
    for i, o in _outputs(nb):
        text = _text(o)
        if o.get("output_type") == "stream" and o.get("name") == "stderr":
            problems.append(f"cell {i} writes to stderr: {text[:200]!r}")
        if re.search(r"warn", text, re.I):
            problems.append(f"cell {i} shows a warning: {text[:200]!r}")
        if re.search(r"\bnan\b", text, re.I):
            problems.append(f"cell {i} shows nan: {text[:200]!r}")
        if re.search(r"\d+%\|", text):  # tqdm's bar: a widget the saved notebook keeps half-way for good
            problems.append(f"cell {i} shows a progress bar: {text[:200]!r}")
    return problems


def test_06_serve_reads_well(tiny_loop):
    """The loop's 06 (tests/tiny_loop.py EXTRA: its prompts and conversation are the notebook's
    defaults, CONVERSATION and PROMPTS here), on the model the loop's 03 trained."""
    assert tiny_loop.params["06_serve"]["max_new_tokens"] == 24
    nb = tiny_loop.notebook("06_serve")
    assert reading_problems(nb) == []
    chat_cell = next(c for c in nb.cells if c.cell_type == "code" and "tuned.say(turn)" in c.source)
    # One output per turn, updated as the answer grew (a saved notebook used to hold one output
    # per streamed piece: one word per line), and no turn without an answer.
    turns = [o["data"]["text/plain"] for o in chat_cell.outputs]
    assert len(turns) == len(CONVERSATION) and all(o["output_type"] == "display_data" for o in chat_cell.outputs)
    for said, shown in zip(CONVERSATION, turns):
        head, _, answer = shown.partition("\nmodel: ")
        assert head == f"you: {said}" and answer.strip(), shown
    # Base and tuned both answer every prompt (with a 1.1 repetition penalty the base's first
    # answer was empty: its first token, "\n", is in the prompt and was penalised below EOS).
    side = json.loads((tiny_loop.run / "serve" / "side_by_side.json").read_text())
    assert [r["prompt"] for r in side["rows"]] == PROMPTS
    assert all(r["base"].strip() and r["tuned"].strip() for r in side["rows"]), side["rows"]
    # The endpoint's answer to the first prompt is the tuned answer shown above: same settings.
    line = next(_text(o) for _, o in _outputs(nb) if " ->  " in _text(o))
    endpoint = ast.literal_eval(line.split(" ->  ", 1)[1].split("\n", 1)[0])
    assert endpoint.strip() and endpoint.strip() == side["rows"][0]["tuned"]


@pytest.fixture(scope="module")
def reviewed_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "reviewed-run"
    make_reviewed_run(run)
    return run


def test_07_review_reads_well_with_votes(reviewed_run, tmp_path):
    nb = _execute("07_review", tmp_path / "07_review.ipynb", run_dir=str(reviewed_run), reviewer="cy", n_boot=200)
    assert reading_problems(nb) == []
    ev = reviewed_run / "eval"
    text = "\n".join(_text(o) for _, o in _outputs(nb))
    # Real timing: make_reviewed_run's reviewers spend 23 s on each item.
    assert "(median 23 s a vote at $0.00/h" in text
    # Every scorecard reason whole (pandas cut them at 50 characters).
    reasons = [r["reason"] for r in json.loads((ev / "review.json").read_text())["scorecard"]]
    assert reasons and all(r in html.unescape(text) for r in reasons)  # as a reader sees them: entities decoded
    for png in ("agreement.png", "ratings.png"):  # the notebook's width: about 1000 px at its 120 dpi
        width, _ = png_size((ev / png).read_bytes())
        assert width <= 1020, f"{png} is {width} px wide: scaled down, its labels shrink"
    assert len(load_votes(ev / "human.jsonl")) == 9


def test_07_review_reads_well_before_anyone_voted(tmp_path):
    run = tmp_path / "run"
    make_reviewed_run(run)
    (run / "eval" / "human.jsonl").unlink()
    nb = _execute("07_review", tmp_path / "07_review.ipynb", run_dir=str(run), reviewer="cy", n_boot=200)
    assert reading_problems(nb) == []
    text = "\n".join(_text(o) for _, o in _outputs(nb))
    assert "no vote timed yet" in text and "median" not in text


def test_the_reading_check_can_fail():
    """reading_problems sees what the notebooks used to show."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("...")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="[transformers] Ignoring ...\n"),
                    nbformat.v4.new_output("display_data", data={"text/markdown": "median nan s a vote"}),
                    nbformat.v4.new_output("stream", name="stdout", text="UserWarning: do_sample is False\n"),
                    nbformat.v4.new_output("display_data", data={"text/plain": "Loading weights:   0%|    | 0/272"})]
    nb.cells = [cell]
    problems = reading_problems(nb)
    assert [p.split(":")[0].split(" ", 2)[2] for p in problems] == ["writes to stderr", "shows nan", "shows a warning",
                                                                    "shows a progress bar"]
