"""Using a trained run's model: LoRA merge, `python -m lib.serve`, metadata checks.

The runs here are real trainings of tiny random LLaMAs (seconds on CPU) through
lib.train.sft, so the run directory has exactly what 03_train leaves: model/ (+ .complete)
and train/metrics.json with the prompt format.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lib.core.client import Endpoint, chat, make_client
from lib.core.errors import UserError
from lib.core.paths import REPO
from lib.serve.chat import ChatModel, GenerationParams
from lib.serve.run_model import load_run_model
from lib.serve.template import encode
from lib.train.sft import TrainConfig, train


def _data(path, n=12):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"r{i}", "instruction": f"Count to {i % 5 + 1}.",
                                "output": " ".join(str(k) for k in range(1, i % 5 + 2))}) + "\n")
    return str(path)


def _train(run_dir, recipe: str) -> dict:
    run_dir.mkdir(parents=True)
    return train(TrainConfig(recipe=recipe, model="tiny", data=_data(run_dir / "train.jsonl"),
                             output_dir=str(run_dir / "model"), max_steps=2, per_device_batch=2, grad_accum=1,
                             max_length=48, learning_rate=1e-2))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny-run"
    _train(run, "tiny")
    return run


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "lora-run"
    _train(run, "alpaca_lora")
    return run


def _logits(model, ids):
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0]


def test_lora_merge_gives_base_plus_adapter_logits(lora_run, tmp_path):
    from peft import PeftModel

    from lib.train.tiny import tiny_model

    rm = load_run_model(lora_run)
    assert rm.format == "alpaca" and rm.base == "tiny:llama"
    tok = AutoTokenizer.from_pretrained(rm.model_dir)
    ids = encode(tok, rm.format, [{"role": "user", "content": "Count to three."}])
    merged = AutoModelForCausalLM.from_pretrained(rm.model_dir, dtype=torch.float32).eval()
    base = tiny_model("llama", tok, seed=TrainConfig().seed).eval()
    base_logits = _logits(base, ids)
    with_adapter = PeftModel.from_pretrained(base, rm.model_dir / "adapter").eval()
    want = _logits(with_adapter, ids)
    got = _logits(merged, ids)
    assert (want - base_logits).abs().max() > 1e-3, "the adapter learned nothing: the comparison would be empty"
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)

    # A run directory that holds only the adapter is merged on load, the same way.
    only = tmp_path / "adapter-only"
    shutil.copytree(lora_run / "train", only / "train")
    shutil.copytree(rm.model_dir / "adapter", only / "model")
    (only / "model" / ".complete").write_text("{}\n")
    rm2 = load_run_model(only)
    assert rm2.model_dir.name == "model-merged"
    again = AutoModelForCausalLM.from_pretrained(rm2.model_dir, dtype=torch.float32).eval()
    torch.testing.assert_close(_logits(again, ids), want, atol=1e-5, rtol=1e-4)


def test_serve_command_answers_the_openai_client_in_the_trained_format(tiny_run):
    """`python -m lib.serve runs/<id>`: real transformers server, official openai client. The
    server's prompt token count equals training's prompt ids for the conversation, so the
    Alpaca format (not SmolLM2's ChatML) is what the model was sent."""
    proc = subprocess.Popen([sys.executable, "-m", "lib.serve", str(tiny_run)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line, deadline = "", time.time() + 300
        while time.time() < deadline and not line.startswith("serving"):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "lib.serve exited before serving"
        assert line.startswith("serving"), "lib.serve did not come up"
        base_url = line.split(" at ")[1].split()[0]
        model = line.split("model=")[1].strip()
        ep = Endpoint(base_url=base_url, model=model)
        tok = AutoTokenizer.from_pretrained(tiny_run / "model")
        messages = [{"role": "user", "content": "Count to two."}, {"role": "assistant", "content": "1 2"},
                    {"role": "user", "content": "Count to three."}]
        text, resp = chat(make_client(ep), ep, messages, max_tokens=6, temperature=0)
        assert resp.usage.prompt_tokens == len(encode(tok, "alpaca", messages))
        assert 0 < resp.usage.completion_tokens <= 6
        # The endpoint lists its model (GET /v1/models answered HTTP 500 on transformers serve).
        assert [m.id for m in make_client(ep).models.list().data] == [model]
        # 06_serve's chat decodes as the endpoint does (the checkpoint's own generation_config,
        # greedy at temperature 0), so it shows the answer a client of the endpoint gets.
        bot = ChatModel.load(load_run_model(tiny_run).model_dir, "alpaca", GenerationParams(max_new_tokens=6))
        bot.history = messages[:-1]
        assert bot.say(messages[-1]["content"], echo=lambda piece: None) == text.strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_run_without_training_metadata_is_refused_with_one_line(tmp_path, tiny_run):
    (tmp_path / "model").mkdir()
    with pytest.raises(UserError, match="no training metadata.*never guessed"):
        load_run_model(tmp_path)
    with pytest.raises(UserError, match="no run directory"):
        load_run_model(tmp_path / "nope")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_run / "train", unfinished / "train")
    shutil.copytree(tiny_run / "model", unfinished / "model")
    (unfinished / "model" / ".complete").unlink()
    with pytest.raises(UserError, match="was not finished"):
        load_run_model(unfinished)


def test_06_serve_notebook_runs_on_a_trained_run(tiny_loop):
    """The notebook end to end (papermill, from notebooks/ like Jupyter): chat, side by side, the
    endpoint; on the model the shared tiny loop trained (tests/tiny_loop.py)."""
    assert tiny_loop.params["06_serve"].get("serve_check", True)  # it starts its endpoint
    text = "\n".join(o.get("text", "") if isinstance(o.get("text", ""), str) else ""
                     for c in tiny_loop.notebook("06_serve").cells if c.cell_type == "code" for o in c.outputs)
    assert "prompt + " in text and "completion tokens" in text  # the endpoint answered the openai client
    assert "serving: $0.0000 spent" in text
    assert (tiny_loop.run / "serve" / "side_by_side.png").stat().st_size > 1000


def test_06_answer_length_picture_is_drawn_in_lib(embedded_model, tmp_path):
    """06_serve's picture (lib/serve/charts.py): one bar per answer, its length in the tuned
    model's tokens without special tokens (an empty answer is 0), the generation cap dotted."""
    from lib.core.figures import save
    from lib.serve.charts import answer_length_figure, answer_lengths

    tok = AutoTokenizer.from_pretrained(embedded_model)
    rows = [{"prompt": "Count.", "base": "one two three", "tuned": ""},
            {"prompt": "Name a fruit.", "base": "Apple", "tuned": " ".join(["apple"] * 9)}]
    assert answer_lengths(rows, tok) == {"base": [3, 1], "tuned": [0, 9]}
    fig = answer_length_figure(rows, tok, max_new_tokens=8)
    (ax,) = fig.axes
    bars = {c.get_label(): [round(p.get_width()) for p in c.patches] for c in ax.containers}
    assert bars == {"base": [3, 1], "tuned": [0, 9]}
    assert [line.get_xdata()[0] for line in ax.lines] == [8]
    assert save(fig, tmp_path / "side_by_side.png", tight=True).stat().st_size > 1000
