"""The notebooks as a person opens them, and their figures as a browser shows them.

`make lab` starts Jupyter in notebooks/, so every notebook must work with that working
directory and its relative path defaults. The default suite's one tiny loop
(tests/tiny_loop.py, fixture `tiny_loop`) executes every notebook that way, once: from
notebooks/, with the `tiny` profile's parameters and no path parameter but a relative
`run_dir`. Here each executed notebook is checked for that, then nbconvert turns it into HTML
and headless Chromium reports, per <img>, whether it decoded.

    .venv/bin/python -m pytest tests/test_notebooks_lab.py -q
"""
from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
import pytest

from lib.core.paths import NOTEBOOKS, REPO
from tests.browser import figures_in_browser, notebook_html, png_size
from tests.tiny_loop import ALL

# The loop (every notebook, one after the other) is set up inside the first test that needs it.
pytestmark = pytest.mark.timeout(2400)


def _images(nb) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if "image/png" in o.get("data", {})]


@pytest.mark.parametrize("name", ALL)
def test_runs_from_notebooks_dir_with_relative_defaults(tiny_loop, name):
    run = tiny_loop.run
    nb = tiny_loop.notebook(name)
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


def test_every_figure_renders_in_chromium(tiny_loop):
    for name in ALL:
        executed = tiny_loop.executed(name)
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
