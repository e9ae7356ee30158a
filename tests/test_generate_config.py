"""One name and one default per generation setting: the dataclass, notebook 01's parameters
and the CLI agree, and a parameter nobody knows stops the notebook in one line."""
from __future__ import annotations

import dataclasses

import pytest

from lib.core.errors import UserError
from lib.generate.config import DERIVED, RUN_PARAMS, GenerateConfig, add_arguments, from_arguments
from lib.core.params import _assigned, _cells, notebook_params, settings_from_params


def _parameters(notebook: str) -> dict:
    """The parameters cell's defaults, evaluated (they are literals)."""
    cell = next(c for c in _cells(notebook) if "parameters" in c["metadata"].get("tags", []))
    ns: dict = {}
    exec("".join(cell["source"]), {}, ns)
    return {k: v for k, v in ns.items() if not k.startswith("__")}


def test_notebook_01_parameters_are_settings_or_run_params_with_the_dataclass_defaults():
    params = _parameters("01_generate")
    fields = {f.name: f.default for f in dataclasses.fields(GenerateConfig)}
    assert set(params) - set(fields) == set(RUN_PARAMS)
    for name in set(params) & set(fields):
        assert params[name] == fields[name], f"{name}: notebook default {params[name]!r}, dataclass {fields[name]!r}"
    cfg = settings_from_params(GenerateConfig, params, also=RUN_PARAMS)
    assert cfg.num_instructions_to_generate == params["num_instructions_to_generate"]


def test_the_cli_is_derived_from_the_dataclass():
    import argparse

    ap = argparse.ArgumentParser()
    add_arguments(ap)
    assert from_arguments(ap.parse_args([])) == GenerateConfig()
    cfg = from_arguments(ap.parse_args(["--num-instructions-to-generate", "7", "--use-batch-api", "--batch-poll-s", "2.5",
                                        "--language", "zh"]))
    assert (cfg.num_instructions_to_generate, cfg.use_batch_api, cfg.batch_poll_s, cfg.language) == (7, True, 2.5, "zh")
    flags = {a.dest for a in ap._actions} - {"help"}
    assert flags == {f.name for f in dataclasses.fields(GenerateConfig)} - set(DERIVED)


@pytest.mark.parametrize("notebook,typo,meant", [("02_clean", "drop_refusal", "drop_refusals"),
                                                 ("01_generate", "num_instructions", "num_instructions_to_generate")])
def test_an_injected_misspelled_parameter_is_one_line_naming_the_right_one(notebook, typo, meant):
    ns = {**_parameters(notebook), "In": [""], "Out": {}, "_ih": [""], typo: 5}
    with pytest.raises(UserError, match=rf"has no parameter '{typo}' \(did you mean '{meant}'\?\)") as e:
        notebook_params(ns, notebook)
    assert "\n" not in str(e.value)
    # the notebook's own variables (assigned in its cells) and imports are not parameters
    own = set()
    for c in _cells(notebook):
        own.update(_assigned("".join(c["source"])))
    del ns[typo]
    ns.update({name: 1.0 for name in own if name not in ns}, dataclasses=dataclasses)
    assert set(notebook_params(ns, notebook)) == set(_parameters(notebook))


def test_settings_from_params_refuses_what_the_dataclass_does_not_know():
    with pytest.raises(UserError, match=r"GenerateConfig has no setting 'top_pp' \(did you mean 'top_p'\?\)"):
        settings_from_params(GenerateConfig, {"top_pp": 0.5})
    assert settings_from_params(GenerateConfig, {"run_dir": "x", "top_p": 0.5}, also=("run_dir",)).top_p == 0.5


def test_the_generator_offers_every_member_both_modes_use():
    """online.py and batch.py drive the Generator only through their Host protocols."""
    from lib.generate import batch, online
    from lib.generate.engine import Generator

    for host in (online.Host, batch.Host):
        members = {n for n in vars(host) if not n.startswith("_")} | set(getattr(host, "__annotations__", {}))
        missing = {n for n in members if not hasattr(Generator, n)} - {"cfg", "ep", "retries", "work_dir"}
        assert not missing, f"{host.__module__}.Host: Generator lacks {missing}"


def test_a_misspelled_papermill_parameter_stops_the_notebook_before_it_writes(tmp_path):
    """End to end in a real kernel: 02_clean with `drop_refusal` (for drop_refusals) fails in
    its setup cell with the one-line error, before anything is written."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from lib.core.paths import REPO

    run = tmp_path / "run"
    with pytest.raises(PapermillExecutionError) as e:
        papermill.execute_notebook(str(REPO / "notebooks" / "02_clean.ipynb"), str(tmp_path / "out.ipynb"),
                                   cwd=str(REPO / "notebooks"), kernel_name="python3", progress_bar=False,
                                   parameters={"run_dir": str(run), "drop_refusal": False})
    assert e.value.ename == "UserError"
    assert "has no parameter 'drop_refusal' (did you mean 'drop_refusals'?)" in e.value.evalue
    assert not run.exists()  # checked before RunContext makes the run directory
