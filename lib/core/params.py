"""Settings dataclasses <-> notebook parameters <-> command lines: one name per setting, none dropped.

    params = notebook_params(globals(), "01_generate")      # in the notebook's setup cell
    cfg = settings_from_params(GenerateConfig, params, also=RUN_PARAMS)

    cfg = parse_settings(TrainConfig, argv)                         # --max-steps 3 --no-packing ...
    worker_argv = settings_argv(cfg)                                # and back, for torchrun workers

A parameter is a name papermill (or a person editing the parameters cell) sets. A
misspelled one (`-p drop_refusal False`) used to vanish: the notebook picked the settings
it knew out of `globals()` and the run went on with the default. Here a name that neither
the notebook's own cells assign nor the dataclass knows is one UserError naming the
closest known parameter, before anything is written.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import json
import typing
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


def declared_types(notebook: str | Path) -> dict[str, str]:
    """{name: annotation} of the parameters cell's annotated names (`max_steps: int = 6` -> "int");
    a name assigned without an annotation is left out (its value is not checked)."""
    for c in _cells(notebook):
        if "parameters" in c.get("metadata", {}).get("tags", []):
            lines = ["" if ln.lstrip().startswith(("%", "!")) else ln for ln in "".join(c["source"]).splitlines()]
            return {n.target.id: ast.unparse(n.annotation) for n in ast.parse("\n".join(lines)).body
                    if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    return {}


# A parameter's value as papermill would inject it, for each annotation a parameters cell uses.
# A bool is no int here (True is not a step count), and an int is a fine float.
_TYPE_CHECKS = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), lambda v: v),
    "float": (lambda v: isinstance(v, int | float) and not isinstance(v, bool), float),
    "bool": (lambda v: isinstance(v, bool), lambda v: v),
    "str": (lambda v: isinstance(v, str | int | float) and not isinstance(v, bool), str),
    "dict": (lambda v: isinstance(v, dict), lambda v: v),
    "list": (lambda v: isinstance(v, list | tuple), list),
}


def typed_value(where: str, annotation: str | None, value, declared_by: str = "the notebook"):
    """`value` checked against a parameter's annotation (and widened: 3 -> 3.0 for a float, a
    YAML number back to text for a str); a mismatch is one UserError naming `where` and the type
    (as `declared_by` declares it: a notebook's parameters cell, a recipe's dataclass).
    An unknown or missing annotation passes the value through."""
    check = _TYPE_CHECKS.get(annotation or "")
    if check is None:
        return value
    ok, convert = check
    if value is None and annotation == "str":
        return ""  # `--set 03_train.model=` : an empty value, as the parameters cell writes ""
    if not ok(value):
        example = {"int": "10", "float": "0.5", "bool": "true or false", "str": "some-text",
                   "dict": "{a: 1}", "list": "[a, b]"}[annotation]
        raise UserError(f"{where}={value!r} is not {'an' if annotation == 'int' else 'a'} {annotation}: "
                        f"{declared_by} declares `{where.rsplit('.', 1)[-1]}: {annotation}`; give e.g. {example}")
    return convert(value)


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


# ---------------------------------------------------------------------------- command line
# The same dataclass as a command line: `--max-steps 3` for `max_steps: int`, dashes for
# underscores, typed by the field. A bool is `--packing`, `--no-packing` or `--packing
# true|false` (nothing else: `--packing maybe` is one error line); `X | None = None` means
# "not set here" (the recipe's value, say), so the flag is simply left out.

_SCALARS = (int, float, str, bool)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _cli_fields(cls, skip=()) -> list[tuple[dataclasses.Field, type, bool]]:
    """(field, scalar type, optional) for every field of `cls` but `skip`; a field with no
    command-line form (a list, a dict) is a TypeError: a programming error, not bad input."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        typ, args = hints[f.name], typing.get_args(hints[f.name])
        optional = type(None) in args
        if optional and len(args) == 2:
            typ = next(a for a in args if a is not type(None))
        if typ not in _SCALARS:
            raise TypeError(f"{cls.__name__}.{f.name}: {hints[f.name]} has no command-line form "
                            "(use int, float, str, bool or one of them | None)")
        out.append((f, typ, optional))
    return out


class _Bool(argparse.Action):
    """`--x`, `--x true|false` (strict, any case) and `--no-x`, all into one dest."""

    def __call__(self, parser, namespace, value, option_string=None):
        if option_string.startswith("--no-"):
            if value is not None:
                raise argparse.ArgumentError(self, f"{option_string} takes no value")
            setattr(namespace, self.dest, False)
        elif value is None or value.lower() in ("true", "false"):
            setattr(namespace, self.dest, value is None or value.lower() == "true")
        else:
            raise argparse.ArgumentError(self, f"{value!r} is not a boolean: use true or false")


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes (unknown flag, bad value) are one UserError line through
    `@cli`, as every other bad input is, instead of the usage text and argparse's own exit."""

    def error(self, message):
        raise UserError(f"{message} (see --help)")


def add_settings_arguments(parser: argparse.ArgumentParser, cls, *, skip=()) -> argparse.ArgumentParser:
    """One flag per field of the dataclass `cls` (but `skip`), typed and defaulted by the field."""
    for f, typ, _ in _cli_fields(cls, skip):
        default = None if f.default is dataclasses.MISSING else f.default
        if typ is bool:
            parser.add_argument(_flag(f.name), "--no-" + _flag(f.name)[2:], dest=f.name, action=_Bool, nargs="?",
                                default=default, metavar="true|false")
        else:
            parser.add_argument(_flag(f.name), dest=f.name, type=typ, default=default)
    return parser


def settings_from_args(cls, args: argparse.Namespace):
    """`cls` from parsed arguments: its fields that the parser set, the rest at their defaults."""
    ns = vars(args)
    return cls(**{f.name: ns[f.name] for f in dataclasses.fields(cls) if f.name in ns})


def parse_settings(cls, argv: list[str] | None, description: str = ""):
    """`cls` from a command line: one flag per field (a mistake is one error line), the rest at defaults."""
    parser = add_settings_arguments(OneLineParser(description=description), cls)
    return settings_from_args(cls, parser.parse_args(argv))


def settings_argv(cfg, *, skip=()) -> list[str]:
    """The command line that `add_settings_arguments` parses back into `cfg` (for worker
    processes): every field that differs from its default, as `--name=value` (a value may
    start with a dash), a bool as `--name` / `--no-name`."""
    argv = []
    for f, typ, _ in _cli_fields(type(cfg), skip):
        value = getattr(cfg, f.name)
        if f.default is not dataclasses.MISSING and value == f.default:
            continue
        if value is None:
            raise ValueError(f"{type(cfg).__name__}.{f.name}=None cannot be written on a command line "
                             "(None is the default of an optional field, which is left out)")
        argv.append((_flag(f.name) if value else "--no-" + _flag(f.name)[2:]) if typ is bool
                    else f"{_flag(f.name)}={value}")
    return argv
