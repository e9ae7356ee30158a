"""FSDP wrap classes from the model, the torchrun line from SkyPilot's variables, the pin on
accelerate's private state that FSDP on CPU writes, and a 2-process CPU FSDP run that is
SIGKILLed after a checkpoint, resumes, and ends with exactly the weights of an uninterrupted run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from lib.core.errors import UserError
from lib.core.files import COMPLETE
from lib.core.server import free_port
from lib.train.checkpoints import latest_complete, set_aside_incomplete
from lib.train.cluster import cluster_from_env, torchrun_command
from lib.train.fsdp import check_accelerate_internals, decoder_layer_classes, fsdp_config
from lib.train.tiny import tiny_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tok(embedded_model):
    return AutoTokenizer.from_pretrained(embedded_model)


@pytest.mark.parametrize("family,cls", [("llama", "LlamaDecoderLayer"), ("glm", "GlmDecoderLayer"),
                                        ("bloom", "BloomBlock"), ("qwen2", "Qwen2DecoderLayer")])
def test_wrap_class_comes_from_the_model(tok, family, cls):
    model = tiny_model(family, tok)
    assert decoder_layer_classes(model) == [cls]
    cfg = fsdp_config(model, activation_checkpointing=True)
    assert cfg["transformer_layer_cls_to_wrap"] == [cls] and cfg["state_dict_type"] == "FULL_STATE_DICT"
    assert cfg["reshard_after_forward"] is True and cfg["activation_checkpointing"] is True


def test_wrap_class_through_peft(tok):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model("llama", tok), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert decoder_layer_classes(model) == ["LlamaDecoderLayer"]


def test_model_without_layer_class_is_refused(tok):
    model = tiny_model("llama", tok)
    model._no_split_modules = ["NoSuchLayer"]
    with pytest.raises(UserError, match="names no decoder-layer class"):
        decoder_layer_classes(model)


def test_torchrun_command_from_skypilot_env():
    env = {"SKYPILOT_NODE_IPS": "10.0.0.5\n10.0.0.6\n", "SKYPILOT_NODE_RANK": "1", "SKYPILOT_NUM_GPUS_PER_NODE": "8"}
    cmd = torchrun_command(["--recipe", "vicuna_13b"], env=env, master_port=29555)
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nnodes=2", "--node_rank=1", "--nproc_per_node=8", "--master_addr=10.0.0.5",
            "--master_port=29555"} <= set(cmd)
    assert cmd[-4:] == ["-m", "lib.train.sft", "--recipe", "vicuna_13b"]


def test_local_cluster_defaults_and_errors():
    assert cluster_from_env({}, nproc=2) == {"nnodes": 1, "node_rank": 0, "nproc_per_node": 2, "master_addr": "127.0.0.1"}
    with pytest.raises(UserError, match="outside the 2 nodes"):
        cluster_from_env({"SKYPILOT_NODE_IPS": "a b", "SKYPILOT_NODE_RANK": "2"})
    with pytest.raises(UserError, match="must be integers"):
        cluster_from_env({"SKYPILOT_NUM_GPUS_PER_NODE": "eight"})


def test_incomplete_checkpoints_are_ignored_and_set_aside(tmp_path):
    for step, done in [(2, True), (4, True), (6, False)]:
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"x")
        if done:
            (d / COMPLETE).write_text("ok")
    assert latest_complete(tmp_path).name == "checkpoint-4"
    moved = set_aside_incomplete(tmp_path)
    assert [(old.name, new.name.startswith("incomplete-checkpoint-6-")) for old, new in moved] == [("checkpoint-6", True)]
    assert latest_complete(tmp_path).name == "checkpoint-4"


def _records(path, n=24):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"r{i}", "instruction": f"Count to {i % 7 + 2} in words.",
                                "input": "", "output": " ".join(["one", "two", "three", "four"] * (i % 3 + 1))}) + "\n")


def _torchrun(tmp_path, out, extra_env=None, steps=6):
    data = tmp_path / "train.jsonl"
    if not data.exists():
        _records(data)
    cmd = torchrun_command(["--recipe", "tiny", "--model", "tiny", "--data", str(data), "--output-dir", str(out),
                            "--max-steps", str(steps), "--save-steps", "2", "--fsdp", "true",
                            "--per-device-batch", "2", "--grad-accum", "1", "--max-length", "64"],
                           env={}, nproc=2, master_port=free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO, **(extra_env or {})}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=420)


def _weights(model_dir):
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


@pytest.mark.full  # the default suite's training kill/resume: tests/test_sky_rehearsal.py's train_7b (2 nodes)
def test_fsdp_kill_and_resume_matches_uninterrupted_run(tmp_path):
    ref = _torchrun(tmp_path, tmp_path / "ref" / "model")
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert "FSDPLlamaDecoderLayer" in ref.stdout  # really sharded per decoder layer, not DDP

    out = tmp_path / "run" / "model"
    killed = _torchrun(tmp_path, out, {"SHEAR_FAULT_KILL_AT_STEP": "5"})
    assert killed.returncode != 0  # SIGKILL after step 5: checkpoint-4 is complete, step 5 is lost
    ckpts = out.with_name("model.checkpoints")
    assert latest_complete(ckpts).name == "checkpoint-4" and not out.exists()
    # A checkpoint torn mid-write (no marker, garbage inside) must never be resumed from.
    torn = ckpts / "checkpoint-6"
    shutil.copytree(ckpts / "checkpoint-4", torn)
    (torn / COMPLETE).unlink()
    (torn / "model.safetensors").write_bytes(b"torn")

    resumed = _torchrun(tmp_path, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "checkpoint-4" in resumed.stdout
    assert "set aside incomplete checkpoint-6" in resumed.stderr
    assert (out / COMPLETE).exists()
    a, b = _weights(tmp_path / "ref" / "model"), _weights(out)
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k
    metrics = json.loads((tmp_path / "run" / "train" / "metrics.json").read_text())
    assert metrics["global_step"] == 6 and metrics["fsdp"] and metrics["world_size"] == 2


def test_every_gpu_of_every_node_and_one_process_without_gpus():
    two_nodes = {"SKYPILOT_NODE_IPS": "10.0.0.5\n10.0.0.6", "SKYPILOT_NODE_RANK": "0"}
    assert cluster_from_env({**two_nodes, "SKYPILOT_NUM_GPUS_PER_NODE": "8"})["nproc_per_node"] == 8
    assert cluster_from_env({**two_nodes, "SKYPILOT_NUM_GPUS_PER_NODE": "0"})["nproc_per_node"] == 1  # CPU rehearsal
    assert cluster_from_env({**two_nodes, "SKYPILOT_NUM_GPUS_PER_NODE": "8"}, nproc=2)["nproc_per_node"] == 2
    assert cluster_from_env({})["nnodes"] == 1


def test_fsdp_on_cpu_still_finds_the_accelerate_internals_it_writes():
    """accelerate has no supported switch for FSDP on CPU, so lib.train.fsdp.enable_fsdp_on_cpu
    writes its shared state: an accelerate that renamed what it writes fails here, in one line."""
    check_accelerate_internals()
    # and the write still takes: a Trainer-style Accelerator built afterwards is FSDP on CPU
    # (in a fresh process: accelerate's state is process-global)
    script = ("from transformers import TrainingArguments\n"
              "from accelerate import Accelerator\n"
              "from accelerate.utils import DistributedType\n"
              "from lib.train.fsdp import enable_fsdp_on_cpu\n"
              "args = TrainingArguments(output_dir='unused', use_cpu=True, fsdp=True, report_to='none',\n"
              "                         fsdp_config={'version': 2, 'transformer_layer_cls_to_wrap': ['LlamaDecoderLayer']})\n"
              "enable_fsdp_on_cpu(args)\n"
              "acc = Accelerator(cpu=True)\n"
              "assert acc.distributed_type == DistributedType.FSDP and acc.state.fsdp_plugin.fsdp_version == 2, acc.state\n"
              "print('fsdp on cpu')\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": REPO})
    assert r.returncode == 0 and "fsdp on cpu" in r.stdout, r.stderr[-2000:]


def test_a_changed_accelerate_is_one_clear_line(monkeypatch):
    from accelerate import state

    monkeypatch.delattr(state.PartialState, "_shared_state")
    with pytest.raises(RuntimeError) as e:
        check_accelerate_internals()
    msg = str(e.value)
    assert "\n" not in msg and "PartialState._shared_state" in msg and "enable_fsdp_on_cpu" in msg
