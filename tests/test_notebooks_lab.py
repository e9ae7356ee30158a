"""The notebooks as a person opens them, and their figures as a browser shows them.

`make lab` starts Jupyter in notebooks/, so every notebook must work with that working
directory and its relative path defaults (`budgets_path="budgets.yaml"` once stopped 03_train
and 04_evaluate there). One tiny run of the whole loop is executed notebook by notebook with
cwd=notebooks/ and the `tiny` profile's parameters (read from lib/profiles/tiny.yaml through
the runner's own merge, so the two never drift). No path parameter is passed except `run_dir`,
and that one is relative too: a sibling of the default `runs/dev` (a person's own scratch
run, which a test must not overwrite), resolved by the same rule as the default. Notebooks
outside the profile run after it with their defaults. Then nbconvert turns each executed
notebook into HTML and headless Chromium reports, per <img>, whether it decoded.

    .venv/bin/python -m pytest tests/test_notebooks_lab.py -q
"""
from __future__ import annotations

import base64
import json
import re
import shutil
import uuid
from pathlib import Path

import nbformat
import pytest

from lib.core.paths import NOTEBOOKS, REPO
from tests.browser import figures_in_browser, notebook_html, png_size

ALL = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
# Generation is the slow phase on 2 cores (the 135M teacher answers one request at a time), and
# tests/test_pipeline.py already runs the tiny profile's full generation. Here 01 sends one list
# request; the run's data/generated.jsonl is then topped up with records that survive cleaning,
# so 03_train has enough to hold out. Working directory, paths and pictures do not depend on
# how many requests were sent.
LAB_OVERRIDES = {"01_generate": {"max_requests": 1, "max_tokens": 96, "answer_missing_outputs": False}}
# Parameters that keep a notebook outside the tiny profile small; never a path. 06_serve's own
# test (tests/test_serve*.py) starts its endpoint; here the chat and the picture are what count.
EXTRA_TINY: dict[str, dict] = {"06_serve": {"serve_check": False, "max_new_tokens": 16}}


# The module's run (every notebook, one after the other) is set up inside the first test: it
# gets the time of the whole loop, like tests/test_pipeline.py's end-to-end case.
pytestmark = pytest.mark.timeout(2400)


def _plan(run_rel: str, server) -> list[tuple[str, dict]]:
    from lib.core.params import declared_params
    from lib.core.profiles import load_profile, notebook_params
    from lib.pipeline.preflight import SHARED_ENDPOINT_PARAMS

    plan = []
    for name, path, params in notebook_params(load_profile("tiny"), {}):
        declared = declared_params(path)
        shared = {k: v for base, model in SHARED_ENDPOINT_PARAMS
                  for k, v in ((base, server.base_url), (model, server.model)) if k in declared}
        plan.append((name, {**shared, **params, **LAB_OVERRIDES.get(name, {}), "run_dir": run_rel}))
    plan += [(name, {**EXTRA_TINY.get(name, {}), "run_dir": run_rel}) for name in ALL if name not in dict(plan)]
    return plan


@pytest.fixture(scope="module")
def lab_run(local_server):
    """runs/lab-test-<id>/ with every notebook executed there from notebooks/; removed afterwards."""
    import papermill

    run_rel = f"runs/lab-test-{uuid.uuid4().hex[:8]}"
    run = REPO / run_rel
    failures = {}
    run.mkdir(parents=True)  # papermill writes the executed notebook there, as the runner does
    try:
        for name, params in _plan(run_rel, local_server):
            assert not any(k.endswith(("_path", "_dir")) and k != "run_dir" for k in params), params
            try:
                papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(run / f"{name}.ipynb"),
                                           parameters=params, cwd=str(NOTEBOOKS), kernel_name="python3",
                                           progress_bar=False)
            except papermill.PapermillExecutionError as e:
                failures[name] = f"{e.ename}: {(e.evalue or '').strip()[-300:]}"
                break  # later phases need this one's outputs
            if name == "01_generate":
                _top_up(run / "data" / "generated.jsonl")
        yield run, failures
    finally:
        shutil.rmtree(run, ignore_errors=True)


def _top_up(generated: Path) -> None:
    from tests.test_clean_filters import good_records

    with open(generated, "a", encoding="utf-8") as f:
        for rec in good_records():
            f.write(json.dumps({k: v for k, v in rec.items() if k != "expect"}, ensure_ascii=False) + "\n")


def _images(nb) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if "image/png" in o.get("data", {})]


@pytest.mark.parametrize("name", ALL)
def test_runs_from_notebooks_dir_with_relative_defaults(lab_run, name):
    run, failures = lab_run
    assert name not in failures, f"{name} failed with cwd=notebooks/: {failures[name]}"
    executed = run / f"{name}.ipynb"
    assert executed.is_file(), f"{name} never ran: an earlier notebook failed ({failures})"
    nb = nbformat.read(executed, as_version=4)
    passed = nb.metadata["papermill"]["parameters"]
    assert not Path(passed["run_dir"]).is_absolute() and "budgets_path" not in passed
    # the run landed under the repository, not under notebooks/ (the working directory)
    assert not (NOTEBOOKS / "runs").exists(), "a relative path was resolved against notebooks/"
    assert list((run / "ledger").glob("*.jsonl")), f"{name}: nothing in {run}/ledger"
    # every picture shown is a PNG saved in the run directory, byte for byte
    shown = _images(nb)
    saved = {p.read_bytes() for p in run.rglob("*.png")}
    assert shown, f"{name} shows no picture"
    assert all(img in saved for img in shown), f"{name} shows a picture that is not the saved PNG"


def test_every_figure_renders_in_chromium(lab_run):
    run, failures = lab_run
    for name in ALL:
        executed = run / f"{name}.ipynb"
        assert executed.is_file(), f"{name} did not run ({failures})"
        expected = [png_size(img) for img in _images(nbformat.read(executed, as_version=4))]
        assert expected, f"{name} shows no picture"
        seen = figures_in_browser(notebook_html(executed))
        assert len(seen) == len(expected), f"{name}: {len(expected)} figures in the notebook, {len(seen)} <img> in the page"
        for i, (img, (w, h)) in enumerate(zip(seen, expected)):
            assert img["complete"] and (img["width"], img["height"]) == (w, h), \
                f"{name}: figure {i + 1} did not render ({img} in the browser, {w}x{h} PNG)"


def test_the_browser_check_sees_a_broken_figure(tmp_path):
    """The check above can fail: a PNG that does not decode comes back with width 0."""
    from matplotlib.figure import Figure

    from lib.core.figures import save

    good = save(Figure(figsize=(2, 1)), tmp_path / "good.png").read_bytes()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show(...)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(b).decode(),
                                                                 "text/plain": "<Image>"})
                    for b in (good, good[:60])]
    nb.cells = [cell]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    seen = figures_in_browser(notebook_html(path))
    assert [(s["width"], s["height"]) for s in seen] == [png_size(good), (0, 0)]


def test_one_way_to_show_a_picture():
    """lib draws and saves (lib/core/figures.py), notebooks `show` the saved PNG; nobody switches
    matplotlib's backend (in a kernel that hides every later figure) or calls plt.show()."""
    for nb_path in NOTEBOOKS.glob("*.ipynb"):
        src = "\n".join(c.source for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == "code")
        for banned in ("matplotlib.use(", "plt.show(", ".savefig(", "Image(filename", "display(fig"):
            assert banned not in src, f"{nb_path.name} uses {banned}: save with lib.core.figures.save, show with lib.core.figures.show"
    for py in (REPO / "lib").rglob("*.py"):
        assert not re.search(r"^\s*matplotlib\.use\(", py.read_text(), re.M), f"{py.relative_to(REPO)} switches matplotlib's backend"
