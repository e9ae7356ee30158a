"""Chinese vocabulary extension on LLaMA's real 32K SentencePiece model (shipped by mistral-common)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lib.core.paths import REPO
from lib.train.vocab import (CJK, extend_tokenizer, freeze_old_rows, load_sentencepiece_tokenizer, resize_embeddings,
                             tokens_per_char)
from tests.zh_corpus import en_texts, llama_model_dir, zh_split


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    train, held = zh_split(n_train=1500, n_held=150)
    out = tmp_path_factory.mktemp("tok")
    info = extend_tokenizer(llama_model_dir(), train, out, new_vocab=3000)
    info["dir"] = out
    return info, load_sentencepiece_tokenizer(llama_model_dir()), load_sentencepiece_tokenizer(out), held


def test_old_ids_unchanged_and_new_pieces_appended(extended):
    import sentencepiece as spm

    info, old, new, _ = extended
    assert info["base_size"] == len(old) == 32000 and info["added"] > 500
    assert len(new) == 32000 + info["added"] and info["first_new_id"] == 32000
    base = spm.SentencePieceProcessor(model_file=str(llama_model_dir() / "tokenizer.model"))
    merged = spm.SentencePieceProcessor(model_file=str(info["dir"] / "tokenizer.model"))
    for i in range(base.get_piece_size()):  # every old piece keeps its id, score and kind
        assert (merged.id_to_piece(i), merged.get_score(i), merged.is_byte(i), merged.is_control(i)) == \
               (base.id_to_piece(i), base.get_score(i), base.is_byte(i), base.is_control(i))


def test_new_tokens_decode_to_their_strings(extended):
    info, old, new, _ = extended
    for i in range(32000, len(new)):
        piece = new.convert_ids_to_tokens(i)
        assert CJK.search(piece), piece
        assert new.decode([i]) == piece.replace("▁", " ").strip() or new.decode([i]) == piece.replace("▁", " ")


def test_chinese_gets_much_cheaper_and_english_does_not_change(extended):
    _, old, new, held = extended
    before, after = tokens_per_char(old, held), tokens_per_char(new, held)
    assert after < 0.8 * before, (before, after)
    for t in en_texts():  # token for token the same ids
        assert new(t)["input_ids"] == old(t)["input_ids"]
    # Chinese round-trips exactly through the extended tokenizer.
    assert all(new.decode(new(t, add_special_tokens=False)["input_ids"]) == t for t in held[:50])


def _tiny_llama(tok, tie: bool):
    from lib.train.tiny import tiny_model

    return tiny_model("llama", tok, seed=0) if tie else _untied(tok)


def _untied(tok):
    from transformers import AutoModelForCausalLM

    from lib.train.tiny import tiny_config

    cfg = tiny_config("llama", len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    cfg.tie_word_embeddings = False
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg)


@pytest.mark.parametrize("tie", [True, False])
def test_resize_starts_new_rows_at_their_old_subtokens(extended, tie):
    _, old, new, _ = extended
    model = _tiny_llama(old, tie)
    before_in = model.get_input_embeddings().weight.detach().clone()
    before_out = model.get_output_embeddings().weight.detach().clone()
    added = resize_embeddings(model, old, new, init="subtokens")
    assert added == list(range(32000, len(new)))
    w_in = model.get_input_embeddings().weight
    w_out = model.get_output_embeddings().weight
    assert w_in.shape[0] == w_out.shape[0] == len(new) == model.config.vocab_size
    assert torch.equal(w_in[:32000], before_in) and torch.equal(w_out[:32000], before_out)
    for i in added[:: max(1, len(added) // 40)]:
        text = new.convert_tokens_to_string([new.convert_ids_to_tokens(i)])
        sub = old(text, add_special_tokens=False)["input_ids"]
        assert sub and torch.allclose(w_in[i], before_in[sub].mean(0)), i
        assert torch.allclose(w_out[i], before_out[sub].mean(0)), i
    # An old-vocabulary input gives the same logits over the old vocabulary as before the resize.
    x = torch.tensor([old("今天天气很好")["input_ids"]])
    ref = _tiny_llama(old, tie)
    with torch.no_grad():
        assert torch.allclose(model(x).logits[..., :32000], ref(x).logits, atol=1e-5)


def test_resize_mean_init(extended):
    _, old, new, _ = extended
    model = _tiny_llama(old, True)
    mean = model.get_input_embeddings().weight[:32000].detach().mean(0)
    added = resize_embeddings(model, old, new, init="mean")
    assert all(torch.allclose(model.get_input_embeddings().weight[i], mean) for i in added[:20])


def test_stage_one_trains_only_the_new_rows(extended):
    _, old, new, _ = extended
    model = _tiny_llama(old, False)
    resize_embeddings(model, old, new)
    snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
    hooks = freeze_old_rows(model, 32000)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    x = torch.tensor([new("今天天气很好，我们去公园散步。")["input_ids"]])
    assert x.max() >= 32000  # the sentence uses new tokens
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    for n, p in model.named_parameters():
        if "embed_tokens" in n or "lm_head" in n:
            assert torch.equal(p[:32000], snapshot[n][:32000]), n
            assert not torch.equal(p[32000:], snapshot[n][32000:]), n
        else:
            assert torch.equal(p, snapshot[n]), n
    for h in hooks:
        h.remove()


def test_cli_names_a_missing_base(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lib.train.vocab", "extend", "--base", str(tmp_path / "nope"),
                        "--corpus", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "o")],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
