"""Profiles: which notebooks a run executes, and with what (lib/profiles/<name>.yaml).

    profile = load_profile("alpaca_7b")
    plan = notebook_params(profile, parse_sets(["03_train.max_steps=10"]), select_phases(profile, "03_train"))
    apply_env_overrides(profile, plan)          # the variables the profile declares under `env:`

A profile is data: `notebooks` maps each notebook to the parameters it names (only what
differs from the notebook's defaults and the recipe's values), `params` gives parameters to
every notebook that declares them, `teacher` the LLM endpoint of the run, `target` laptop or
cloud, and `env` the environment variables that may replace a value, visibly (e.g.
`BASE_MODEL: 03_train.model`). A parameter a notebook does not declare is refused: a typo in a
profile must not silently fall back to a default.

Two layers read profiles, so they live here: the runner (lib.pipeline) executes them, and
the launcher (lib.launch) derives what a sky task trains from the profile its run script names.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from lib.core.errors import UserError
from lib.core.params import declared_params, declared_types, typed_value
from lib.core.paths import LIB, NOTEBOOKS

PROFILES = LIB / "profiles"
PROFILE_KEYS = ("description", "target", "teacher", "params", "notebooks", "env")
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def load_profile(name_or_path: str) -> dict:
    """The profile as a dict with `target` and `env` filled in and `path` added; one line per mistake."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES / f"{name_or_path}.yaml"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in PROFILES.glob("*.yaml")))
        raise UserError(f"no profile {name_or_path!r}: use one of {names} or a path to a profile YAML")
    try:
        prof = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: save the profile as UTF-8 YAML") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML ({str(e).splitlines()[0]}): fix the file") from None
    if not isinstance(prof, dict):
        raise UserError(f"{path} holds a {type(prof).__name__}, not a mapping: write `notebooks:` and its parameters")
    unknown = set(prof) - set(PROFILE_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown key(s) {sorted(unknown)}: use {', '.join(PROFILE_KEYS)}")
    if not isinstance(prof.get("notebooks"), dict) or not prof["notebooks"]:
        raise UserError(f"{path}: `notebooks` must map notebook names to parameter dicts")
    for nb, params in prof["notebooks"].items():
        if params is not None and not isinstance(params, dict):
            raise UserError(f"{path}: notebooks.{nb} is {params!r}, not a mapping of parameters: write `{nb}: {{}}` "
                            "for the notebook's defaults")
    if prof.get("params") is not None and not isinstance(prof["params"], dict):
        raise UserError(f"{path}: `params` must map parameter names to values")
    if prof.setdefault("target", "laptop") not in ("laptop", "cloud"):
        raise UserError(f"{path}: target {prof['target']!r} is not laptop or cloud")
    prof["env"] = prof.get("env") or {}
    for var, where in prof["env"].items():
        nb, _, param = str(where).partition(".")
        if not ENV_NAME.fullmatch(str(var)) or nb not in prof["notebooks"] or not param:
            raise UserError(f"{path}: env {var}: {where!r} must map an UPPER_CASE variable to NOTEBOOK.PARAM "
                            "of a notebook this profile runs")
    prof["path"] = str(path)
    return prof


def parse_sets(sets: list[str]) -> dict[str, dict]:
    """`--set NOTEBOOK.PARAM=VALUE` flags as {notebook: {param: value}} (values read as YAML)."""
    out: dict[str, dict] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        nb, dot, param = key.partition(".")
        if not sep or not dot or not nb or not param:
            raise UserError(f"--set {item!r} is malformed: write --set NOTEBOOK.PARAM=VALUE, e.g. --set 03_train.max_steps=10")
        try:
            out.setdefault(nb, {})[param] = yaml.safe_load(value)
        except yaml.YAMLError as e:  # `--set a.b=[1`, a control character: YAML's own error
            raise UserError(f"--set {item!r}: the value is not valid YAML ({str(e).splitlines()[0]}): quote it or "
                            "fix it, e.g. --set 03_train.max_steps=10") from None
    return out


def select_phases(profile: dict, phases: str | None) -> list[str]:
    """The profile's notebooks to run, in the profile's order: all, or those `--phases` names."""
    every = list(profile["notebooks"])
    if not phases:
        return every
    wanted = [p.strip() for p in phases.split(",") if p.strip()]
    unknown = sorted(set(wanted) - set(every))
    if unknown or not wanted:
        raise UserError(f"--phases {phases!r} names {unknown or 'nothing'}: profile {Path(profile['path']).stem} "
                        f"runs {','.join(every)}")
    return [p for p in every if p in wanted]


def notebook_params(profile: dict, sets: dict[str, dict], phases: list[str] | None = None) -> list[tuple[str, Path, dict]]:
    """[(name, path, params)] in run order, checked against each notebook's declared parameters."""
    unknown_nb = set(sets) - set(profile["notebooks"])
    if unknown_nb:
        raise UserError(f"--set names notebook(s) {sorted(unknown_nb)} that profile does not run: use {sorted(profile['notebooks'])}")
    plan = []
    for name, params in profile["notebooks"].items():
        if phases is not None and name not in phases:
            continue
        path = NOTEBOOKS / f"{name}.ipynb"
        if not path.exists():
            raise UserError(f"profile {profile['path']} runs {name} but {path} does not exist: fix the profile")
        declared = declared_params(path)
        merged = {k: v for k, v in (profile.get("params") or {}).items() if k in declared}
        merged.update(params or {})
        merged.update(sets.get(name, {}))
        bad = sorted(set(merged) - set(declared))
        if bad:
            raise UserError(f"{name} has no parameter(s) {bad}: it declares {sorted(declared)}")
        for key in merged:
            if "key" in key.lower() and not key.endswith("_env"):
                raise UserError(f"{name}.{key} looks like a secret: pass keys through the environment (api_key_env names the variable)")
        # typed like the parameters cell, before the first phase runs (`max_steps=abc` is refused here,
        # not in the notebook after the earlier phases ran and the run's files were rewritten)
        types = declared_types(path)
        merged = {k: typed_value(f"{name}.{k}", types.get(k), v) for k, v in merged.items()}
        plan.append((name, path, merged))
    return plan


def apply_env_overrides(profile: dict, plan: list[tuple[str, Path, dict]], env=None) -> dict[str, dict]:
    """Set parameters from the environment variables the profile declares (non-empty ones only);
    returns {NB.PARAM: {value, from, replaced}} for the record. `NB.PARAM.KEY` sets one key of a
    dict parameter (e.g. 04_evaluate.models.base)."""
    env = os.environ if env is None else env
    done: dict[str, dict] = {}
    by_name = {name: params for name, _, params in plan}
    for var, where in profile["env"].items():
        raw = str(env.get(var) or "")
        nb, _, rest = str(where).partition(".")
        if not raw.strip() or nb not in by_name:
            continue
        params = by_name[nb]
        param, _, key = rest.partition(".")
        # numbers and booleans as YAML reads them; anything else (paths, ids, URLs) stays text
        value = yaml.safe_load(raw) if not key else raw
        if not isinstance(value, int | float | bool):
            value = raw
        if key:
            old = dict(params.get(param) or {})
            replaced, old[key] = old.get(key), value
            params[param] = old
        else:
            value = typed_value(f"${var} -> {nb}.{param}", declared_types(NOTEBOOKS / f"{nb}.ipynb").get(param), value)
            replaced, params[param] = params.get(param), value
        done[f"{nb}.{rest}"] = {"value": value, "from": var, "replaced": replaced}
        print(f"override: {nb}.{rest} = {value!r} from ${var} (replaces {_what(replaced)})", flush=True)
    for name, _, params in plan:
        mine = {k.split(".", 1)[1]: f"${v['from']} replaced {_what(v['replaced'])}" for k, v in done.items()
                if k.split(".", 1)[0] == name}
        if mine:
            params["__overrides__"] = mine
    return done


def _what(replaced) -> str:
    # a parameter the profile leaves out keeps the notebook's default, often "the recipe's"
    return "the notebook's default" if replaced is None else repr(replaced)
