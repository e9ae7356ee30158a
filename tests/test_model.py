"""The embedded model: converted once from the GGUF the package ships, atomically."""
import json

import pytest
from transformers import AutoTokenizer

from lib.core.model import (COMPLETE, EMBEDDED_ALIASES, EOS_TOKEN, LAPTOP_MODELS, PAD_TOKEN, embedded_model_dir,
                            eos_ids, is_complete, is_embedded, load_for_inference, model_fingerprint, resolve_model)


def test_converted_checkpoint_is_complete_and_reused(embedded_model):
    assert is_complete(embedded_model)
    stamp = (embedded_model / COMPLETE).stat().st_mtime
    assert embedded_model_dir() == embedded_model
    assert (embedded_model / COMPLETE).stat().st_mtime == stamp  # not converted again
    assert resolve_model("embedded") == str(embedded_model)
    # One tuple of names: each resolves to the checkpoint, and the runner's laptop check covers each.
    assert all(resolve_model(a) == str(embedded_model) for a in ("", *EMBEDDED_ALIASES))
    assert set(EMBEDDED_ALIASES) < set(LAPTOP_MODELS) and not is_embedded("tiny") and resolve_model("x/y") == "x/y"


def test_eos_ends_the_turn_and_pad_is_distinct(embedded_model):
    tok = AutoTokenizer.from_pretrained(embedded_model)
    assert tok.eos_token == EOS_TOKEN and tok.pad_token == PAD_TOKEN
    assert tok.eos_token_id != tok.pad_token_id
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                                   tokenize=False)
    assert text.rstrip().endswith(EOS_TOKEN)
    cfg = json.loads((embedded_model / "config.json").read_text())
    assert cfg["eos_token_id"] == tok.eos_token_id
    assert "quantization_config" not in cfg  # de-quantised: the Trainer must accept it


def test_a_checkpoint_for_inference_its_eos_and_fingerprint(embedded_model, tmp_path):
    """What evaluation, judging, serving and export share (lib.core.model)."""
    tok, model = load_for_inference(embedded_model)
    assert tok.padding_side == "left" and not model.training and tok.pad_token is not None
    assert tok.convert_tokens_to_ids(EOS_TOKEN) in eos_ids(tok, model)
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in ("config.json", "generation_config.json"):
        (copy / f).write_bytes((embedded_model / f).read_bytes())
    before = model_fingerprint(copy)
    assert before == model_fingerprint(copy) and before != model_fingerprint(embedded_model)
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("}", ', "x": 1}', 1))
    assert model_fingerprint(copy) != before


@pytest.mark.full  # converts the GGUF again (~23 s of 2 cores); `make setup` converts once per machine
def test_interrupted_conversion_is_redone(tmp_path):
    target = tmp_path / "models" / "smollm2-135m-instruct"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{half written")
    out = embedded_model_dir(tmp_path)
    assert is_complete(out)
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
