"""Notebook parameters to a settings dataclass, strictly: one name per setting, none dropped.

    params = notebook_params(globals(), "01_generate")      # in the notebook's setup cell
    cfg = settings_from_params(GenerateConfig, params, also=RUN_PARAMS)

A parameter is a name papermill (or a person editing the parameters cell) sets. A
misspelled one (`-p drop_refusal False`) used to vanish: the notebook picked the settings
it knew out of `globals()` and the run went on with the default. Here a name that neither
the notebook's own cells assign nor the dataclass knows is one UserError naming the
closest known parameter, before anything is written.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import json
from pathlib import Path

from lib.core.errors import UserError
from lib.core.paths import REPO

# What papermill can inject: plain values. Modules, functions and objects in globals() are
# the notebook's own imports; In and Out are IPython's input and output history.
_PLAIN = (str, int, float, bool, dict, list, tuple, type(None))
_IPYTHON = {"In", "Out"}


def _cells(notebook: str | Path) -> list[dict]:
    path = Path(notebook)
    if not path.suffix:
        path = REPO / "notebooks" / f"{notebook}.ipynb"
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]


def _assigned(source: str) -> list[str]:
    """Top-level names a cell binds (assignments, imports, defs, loops, with-targets)."""
    # IPython magics and shell lines are not Python: blank them, the rest still parses.
    lines = ["" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines()]
    names = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.append(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names += [(a.asname or a.name).split(".")[0] for a in node.names]
    return names


def declared_params(notebook: str | Path) -> list[str]:
    """Names the notebook's cell tagged `parameters` assigns, in order (parsed with ast): what
    papermill, the runner and `notebook_params` accept. No such cell is one UserError."""
    for c in _cells(notebook):
        if "parameters" in c.get("metadata", {}).get("tags", []):
            return list(dict.fromkeys(_assigned("".join(c["source"]))))
    raise UserError(f"{notebook} has no cell tagged `parameters`: tag the first code cell so papermill can set it")


def notebook_params(ns: dict, notebook: str | Path) -> dict:
    """The parameters cell's names with their current values in `ns` (the kernel's globals).

    `notebook`: "01_generate" (under notebooks/) or a path. Raises UserError for a plain
    value in `ns` that no cell of the notebook assigns, i.e. an unknown injected parameter."""
    declared = declared_params(notebook)
    own = set(declared)
    for c in _cells(notebook):
        own.update(_assigned("".join(c["source"])))
    unknown = sorted(k for k, v in ns.items()
                     if not k.startswith("_") and k not in _IPYTHON and k not in own and isinstance(v, _PLAIN))
    if unknown:
        raise UserError(_unknown_message(unknown, declared, f"{Path(str(notebook)).stem} has no parameter"))
    return {k: ns[k] for k in declared if k in ns}


def settings_from_params(cls, params: dict, *, also=()):
    """`cls(**params)` for the names that are `cls` fields; `also` names the other parameters
    the caller uses itself (paths, endpoints). Any other name is one UserError."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - fields - set(also))
    if unknown:
        raise UserError(_unknown_message(unknown, sorted(fields | set(also)), f"{cls.__name__} has no setting"))
    return cls(**{k: v for k, v in params.items() if k in fields})


def _unknown_message(unknown: list[str], known: list[str], what: str) -> str:
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"{what} {', '.join(hints)}: use one of {', '.join(known)}"
