"""03_train through papermill: every recipe in its tiny form on CPU, and the local profile's promise."""
from __future__ import annotations

import json

import papermill as pm
import pytest

from lib.core.paths import NOTEBOOKS
from lib.train.recipes import list_recipes, load_recipe

EN = [("Name a primary colour.", "", "Red is a primary colour."),
      ("Add the two numbers.", "2 and 3", "The sum is 5."),
      ("Give a synonym for happy.", "", "Joyful."),
      ("Translate to French.", "Good morning", "Bonjour.")]
ZH = [("写一个关于春天的句子。", "", "春天来了，花都开了。"),
      ("法国的首都是哪里？", "", "法国的首都是巴黎。")]
# Representative tiny forms for the default suite: BLOOM (Chinese, padding fallback) and GLM
# (LoRA, its own chat template). The others run under `full` (`make test-full`); the LLaMA
# path is also trained by tests/test_train_fsdp.py and test_train_sft.py in the default suite.
DEFAULT = {"belle_zh", "chatglm"}


def make_run(tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    with open(run / "data" / "clean.jsonl", "w") as f:
        for i in range(24):
            ins, inp, out = (EN + ZH)[i % 6]
            f.write(json.dumps({"id": f"g{i}", "instruction": f"{ins} ({i})", "input": inp, "output": out,
                                "source": "test", "lang": "zh" if i % 6 >= 4 else "en"}, ensure_ascii=False) + "\n")
    return run


def run_notebook(run, **params):
    out = run / "03_train.ipynb"
    # from notebooks/ with the default budgets_path, as `make lab` runs it
    pm.execute_notebook(str(NOTEBOOKS / "03_train.ipynb"), str(out), kernel_name="python3", cwd=str(NOTEBOOKS),
                        parameters={"run_dir": str(run), **params}, progress_bar=False)
    return json.loads((run / "train" / "metrics.json").read_text()), out


@pytest.mark.parametrize("recipe", [pytest.param(r, marks=[] if r in DEFAULT else [pytest.mark.full])
                                    for r in list_recipes() if r != "embedded"
                                    and load_recipe(r).format != "text"  # text recipes: test_train_pretrain.py
                                    and load_recipe(r).dpo is None])  # DPO recipes: test_prefer_dpo.py
def test_every_recipe_runs_tiny_through_papermill(tmp_path, recipe):
    run = make_run(tmp_path)
    m, out = run_notebook(run, recipe=recipe, model="tiny", max_steps=2, per_device_batch=2, grad_accum=1,
                          max_length=96, save_steps=1)
    assert m["recipe"] == recipe and m["global_step"] == 2
    assert m["heldout_examples"] == 4 and m["base_heldout_loss"] > 0 and m["tuned_heldout_loss"] > 0
    assert (run / "model" / ".complete").exists() and (run / "model" / "config.json").exists()
    assert (run / "model" / "chat_template.jinja").exists() or "chat_template" in (run / "model" / "tokenizer_config.json").read_text()
    assert (run / "train" / "loss_curve.png").stat().st_size > 1000
    assert m["masking"]["kept"] == m["train_examples"] == 20
    if recipe == "belle_zh":
        assert m["packing"] is False  # BLOOM's ALiBi: padding fallback, said out loud
    if recipe == "chatglm":
        assert m["lora"] and m["format"] == "chat"
    text = out.read_text()
    assert "held-out loss" in text and "training spend so far" in text


@pytest.mark.full
def test_two_process_notebook_run(tmp_path):
    run = make_run(tmp_path)
    m, _ = run_notebook(run, recipe="vicuna_7b", model="tiny", max_steps=2, per_device_batch=2, grad_accum=1,
                        max_length=96, nproc=2)
    assert m["world_size"] == 2 and m["fsdp"] and "FSDPLlamaDecoderLayer" in m["fsdp_units"]


@pytest.mark.full
def test_local_profile_lowers_heldout_loss(tmp_path):
    """The issue's Done-when on the embedded model: tuned < base on held-out generated-style data."""
    run = make_run(tmp_path)
    m, _ = run_notebook(run, recipe="embedded", model="embedded", max_steps=4)
    assert m["tuned_heldout_loss"] < m["base_heldout_loss"]
