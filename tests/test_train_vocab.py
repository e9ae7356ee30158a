"""Chinese vocabulary extension on LLaMA's real 32K SentencePiece model (shipped by mistral-common):
appended pieces, one tokenization in all four places it is applied, embedding rows, the checks."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from lib.core.errors import UserError
from lib.core.paths import REPO
from lib.train.vocab import (CJK, TOKENIZER_FILE, VOCAB_RECORD, appended_scores, check_extended_vocab, check_extends,
                             extend_tokenizer, freeze_old_rows, load_sentencepiece_tokenizer, main,
                             merge_sentencepiece, parse_sentencepiece, resize_embeddings, tokens_per_char)
from tests.tokenizer_paths import disagreements, held_out_texts, resized_gguf, tokenizers_of
from tests.zh_corpus import en_texts, llama_model_dir, write_jsonl, zh_split


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    train, held = zh_split(n_train=1500, n_held=150)
    out = tmp_path_factory.mktemp("tok") / "zh"
    info = extend_tokenizer(llama_model_dir(), train, out, new_vocab=3000)
    info["dir"] = out
    return info, load_sentencepiece_tokenizer(llama_model_dir()), load_sentencepiece_tokenizer(out), held


@pytest.fixture(scope="module")
def resized(extended, tmp_path_factory):
    """The extended tokenizer on a tiny LLaMA, resized and exported to GGUF (~40 s on 2 cores)."""
    t0 = time.time()
    ckpt, gguf = resized_gguf(extended[0]["dir"], tmp_path_factory.mktemp("gguf"))
    return ckpt, gguf, time.time() - t0


def test_old_ids_unchanged_and_new_pieces_appended_below_every_old_score(extended):
    import sentencepiece as spm

    info, old, new, _ = extended
    assert info["base_size"] == len(old) == 32000 and info["added"] > 500
    assert len(new) == 32000 + info["added"] and info["first_new_id"] == 32000
    base = spm.SentencePieceProcessor(model_file=str(llama_model_dir() / "tokenizer.model"))
    merged = spm.SentencePieceProcessor(model_file=str(info["dir"] / "tokenizer.model"))
    for i in range(base.get_piece_size()):  # every old piece keeps its id, score and kind
        assert (merged.id_to_piece(i), merged.get_score(i), merged.is_byte(i), merged.is_control(i)) == \
               (base.id_to_piece(i), base.get_score(i), base.is_byte(i), base.is_control(i))
    floor = min(base.get_score(i) for i in range(32000))
    new_scores = [merged.get_score(i) for i in range(32000, merged.get_piece_size())]
    assert floor == -1e9 and new_scores[0] < floor  # LLaMA's ▁▁/▁▁▁▁ score -1e9: the new ones go below
    assert all(a > b for a, b in zip(new_scores, new_scores[1:]))  # decreasing with id, no ties
    assert appended_scores([-5.0, -2.0], 3) == [-6.0, -7.0, -8.0]
    # A BPE extension of a BPE base: every appended piece can be built by merges (the CJK rule
    # drops no piece a CJK piece is built from, in this corpus).
    assert not _unreachable(parse_sentencepiece((info["dir"] / TOKENIZER_FILE).read_bytes()))


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


def test_four_tokenizers_give_the_same_ids_on_held_out_text(extended, resized):
    """sentencepiece, transformers' SentencePiece class, the fast tokenizer training loads and
    llama.cpp on the exported GGUF: id for id on every held-out document."""
    info, _, _, held = extended
    ckpt, gguf, seconds = resized
    ways, llm = tokenizers_of(ckpt, gguf)
    try:
        assert llm.n_vocab() == info["size"]
        texts = held_out_texts(held)
        for kind, docs in texts.items():
            assert {w: len(bad) for w, bad in disagreements(ways, docs).items()} == \
                   {"slow": 0, "fast": 0, "gguf": 0}, kind
        new_ids = sum(i >= 32000 for t in texts["zh"] + texts["mixed"] for i in ways["gguf"](t))
        assert new_ids > 1000  # the comparison exercises the appended pieces
    finally:
        llm.close()
    print(f"resize + GGUF export: {seconds:.0f} s; documents: " + ", ".join(f"{k} {len(v)}" for k, v in texts.items()))


def test_score_zero_and_id_ranked_merges_segment_differently(extended, tmp_path):
    """The two rules the extension needs, each shown necessary: with every new piece at score 0
    (Chinese-LLaMA's merge) transformers' own conversion disagrees with sentencepiece on held-out
    Chinese; with merges ranked by id (transformers 5's conversion), even LLaMA's own vocabulary
    disagrees with sentencepiece on runs of spaces."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    info, _, _, held = extended
    m = parse_sentencepiece((info["dir"] / TOKENIZER_FILE).read_bytes())
    for p in m.pieces[32000:]:
        p.score = 0.0
    (tmp_path / TOKENIZER_FILE).write_bytes(m.SerializeToString())
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / TOKENIZER_FILE))
    by_id = LlamaTokenizer.from_pretrained(tmp_path, legacy=False)
    ways = {"sentencepiece": sp.encode, "fast": lambda t: by_id(t, add_special_tokens=False)["input_ids"]}
    assert len(disagreements(ways, held)["fast"]) > len(held) // 10
    code = ["def f(x):\n    if x:\n        return  x", "a  b   c    d"]
    base_sp = spm.SentencePieceProcessor(model_file=str(llama_model_dir() / TOKENIZER_FILE))
    base_by_id = LlamaTokenizer.from_pretrained(llama_model_dir(), legacy=False)
    ours = load_sentencepiece_tokenizer(llama_model_dir())
    for t in code:
        assert base_by_id(t, add_special_tokens=False)["input_ids"] != base_sp.encode(t)
        assert ours(t, add_special_tokens=False)["input_ids"] == base_sp.encode(t)


def test_chinese_llama_published_merge_and_ours(shared_data):
    """Chinese-LLaMA's merge_tokenizers.py, re-implemented from the published script: every piece of
    its 20K Chinese unigram model that LLaMA lacks, appended with score 0. Ours on the same model:
    the CJK pieces only, with `appended_scores`. The counts are those of docs/fidelity.md."""
    base = (llama_model_dir() / TOKENIZER_FILE).read_bytes()
    zh = (shared_data / "chinese_llama_sp.model").read_bytes()
    published = parse_sentencepiece(base)
    have = {p.piece for p in published.pieces}
    for p in parse_sentencepiece(zh).pieces:
        if p.piece not in have:
            q = published.pieces.add()
            q.piece, q.score = p.piece, 0
            have.add(p.piece)
    merged, added = merge_sentencepiece(base, zh)
    ours = parse_sentencepiece(merged)
    theirs = [p.piece for p in published.pieces[32000:]]
    counts = (len(parse_sentencepiece(zh).pieces), len(theirs), len(added), len(ours.pieces))
    assert counts == (20000, 17187, 16413, 48413)  # 24 of ours are kana and Hangul (the one CJK class)
    assert added == [t for t in theirs if CJK.search(t)]  # the same pieces, the same order, CJK only
    assert {"2016", "。”", "......"} <= set(theirs) - set(added)  # digits and punctuation they add
    assert all(p.score == 0 for p in published.pieces[32000:])
    scores = [p.score for p in ours.pieces[32000:]]
    assert scores[0] < min(p.score for p in ours.pieces[:32000]) and all(a > b for a, b in zip(scores, scores[1:]))
    assert [p.piece for p in ours.pieces[:32000]] == [p.piece for p in published.pieces[:32000]]
    # A unigram model's words need not be BPE merges of two pieces of the merged vocabulary: these
    # ids can never be produced (by any of the four tokenizers), in either merge.
    assert (len(_unreachable(published)), len(_unreachable(ours))) == (338, 303)


def _unreachable(m) -> list[str]:
    """Appended pieces that no chain of BPE merges builds (a piece is built from one character, or
    by merging two pieces of the vocabulary that are themselves built)."""
    vocab = {p.piece for p in m.pieces if p.type == p.NORMAL}
    built: dict[str, bool] = {}

    def ok(s: str) -> bool:
        if s not in built:
            built[s] = len(s) == 1 or any(s[:i] in vocab and s[i:] in vocab and ok(s[:i]) and ok(s[i:])
                                          for i in range(1, len(s)))
        return built[s]

    return [p.piece for p in m.pieces[32000:] if not ok(p.piece)]


@pytest.mark.parametrize("tie", [True, False])
def test_resize_starts_new_rows_at_their_real_subtokens(extended, tie):
    import sentencepiece as spm

    _, old, new, _ = extended
    # The reference: sentencepiece on the old model with no dummy prefix, the bare "▁" left out.
    m = parse_sentencepiece((llama_model_dir() / TOKENIZER_FILE).read_bytes())
    m.normalizer_spec.add_dummy_prefix = False
    sp = spm.SentencePieceProcessor(model_proto=m.SerializeToString())
    bare = sp.piece_to_id("▁")
    model = _tiny_llama(old, tie)
    before_in = model.get_input_embeddings().weight.detach().clone()
    before_out = model.get_output_embeddings().weight.detach().clone()
    added = resize_embeddings(model, old, new, init="subtokens")
    assert added == list(range(32000, len(new)))
    w_in = model.get_input_embeddings().weight
    w_out = model.get_output_embeddings().weight
    assert w_in.shape[0] == w_out.shape[0] == len(new) == model.config.vocab_size
    assert torch.equal(w_in[:32000], before_in) and torch.equal(w_out[:32000], before_out)
    with_bare = 0
    for i in added:
        piece = new.convert_ids_to_tokens(i)
        sub = [j for j in sp.encode(piece.replace("▁", " ")) if j != bare]
        assert sub and torch.allclose(w_in[i], before_in[sub].mean(0)), (i, piece)
        assert torch.allclose(w_out[i], before_out[sub].mean(0)), (i, piece)
        with_bare += bare in old(new.convert_tokens_to_string([piece]), add_special_tokens=False)["input_ids"]
    assert with_bare > len(added) // 2  # the old rule (tokenize the decoded text) averaged "▁" into most rows
    # An old-vocabulary input gives the same logits over the old vocabulary as before the resize.
    x = torch.tensor([old("今天天气很好")["input_ids"]])
    ref = _tiny_llama(old, tie)
    with torch.no_grad():
        assert torch.allclose(model(x).logits[..., :32000], ref(x).logits, atol=1e-5)


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


# ----------------------------------------------------------------------------- refusals

def _refused(capsys, argv: list[str]) -> str:
    """Run the CLI in process: it must exit 2 with one `error:` line and nothing else."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_resize_refuses_a_model_whose_vocabulary_the_tokenizer_does_not_extend(extended, embedded_model, tmp_path):
    """SmolLM2 (byte-level BPE, 49,152 ids) with a tokenizer extended from LLaMA's: refused before
    the weights load, naming the first differing id; nothing written."""
    info, old, new, _ = extended
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "lib.train.vocab", "resize", "--model", str(embedded_model),
                        "--tokenizer", str(info["dir"]), "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "id 0 is '<|endoftext|>' in the base model" in r.stderr and "'<unk>' in the tokenizer" in r.stderr
    assert not out.exists() and not list(tmp_path.iterdir())
    with pytest.raises(UserError, match="id 32000 is '.+' in the base model and nothing in the extended"):
        check_extends(new, old)  # the other way round: the "extension" is shorter
    check_extends(old, new)


def test_export_refuses_a_sentencepiece_checkpoint_without_its_model_file(resized, tmp_path):
    """Without tokenizer.model, llama.cpp's converter scores every piece alike: refused up front."""
    import shutil

    from lib.serve.export import convert_f16

    ckpt = tmp_path / "ckpt"
    shutil.copytree(resized[0], ckpt)
    (ckpt / TOKENIZER_FILE).unlink()
    with pytest.raises(UserError, match="no tokenizer.model"):
        convert_f16(ckpt, tmp_path / "x.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_pretraining_checks_the_vocabulary_the_model_was_resized_for(extended, resized, embedded_model):
    from transformers import AutoConfig, AutoTokenizer

    info, old, new, _ = extended
    ckpt = resized[0]
    config, tok = AutoConfig.from_pretrained(ckpt), AutoTokenizer.from_pretrained(ckpt)
    assert getattr(config, VOCAB_RECORD)["base_vocab_size"] == 32000 and config.vocab_size == info["size"]
    check_extended_vocab(tok, config, 32000)  # stage 1 (new_embeddings_from) and stage 2 (0)
    check_extended_vocab(tok, config)
    with pytest.raises(UserError, match="set new_embeddings_from: 32000"):
        check_extended_vocab(tok, config, 32001)
    with pytest.raises(UserError, match="not the one its embeddings were resized for"):
        check_extended_vocab(AutoTokenizer.from_pretrained(embedded_model), config)
    with pytest.raises(UserError, match="not the one its embeddings were resized for"):
        check_extended_vocab(old, config)  # the base tokenizer: the new rows would never be used
    plain = AutoConfig.from_pretrained(embedded_model)
    check_extended_vocab(AutoTokenizer.from_pretrained(embedded_model), plain)  # no extension, nothing claimed
    with pytest.raises(UserError, match="no vocabulary-extension record"):
        check_extended_vocab(AutoTokenizer.from_pretrained(embedded_model), plain, 32000)


def test_bad_vocab_inputs_get_one_line_and_write_nothing(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "zh.jsonl", zh_split(n_train=200, n_held=0)[0])
    out = tmp_path / "out"
    files = {"empty": b"", "binary": bytes(range(256)) * 8, "not SentencePiece": (REPO / "README.md").read_bytes()}
    for name, data in files.items():
        (tmp_path / "base.model").write_bytes(data)
        err = _refused(capsys, ["extend", "--base", str(tmp_path / "base.model"), "--corpus", str(corpus),
                                "--out", str(out)])
        assert ("is empty" if name == "empty" else "is not a SentencePiece model") in err, (name, err)
    base = str(llama_model_dir() / TOKENIZER_FILE)
    for n, why in (("0", "must be a positive number"), ("-3", "must be a positive number"),
                   ("5", "is smaller than the corpus's")):
        assert why in _refused(capsys, ["extend", "--base", base, "--corpus", str(corpus), "--out", str(out),
                                        "--new-vocab", n])
    assert "not found" in _refused(capsys, ["extend", "--base", str(tmp_path / "nope"), "--corpus", str(corpus),
                                            "--out", str(out)])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert "not an earlier output" in _refused(capsys, ["extend", "--base", base, "--corpus", str(corpus),
                                                        "--out", str(tmp_path / "mine")])
    for flag in ("--model", "--tokenizer"):
        argv = {"--model": str(llama_model_dir()), "--tokenizer": str(llama_model_dir()), "--out": str(out)}
        argv[flag] = str(tmp_path / "missing")
        assert f"{flag} {tmp_path / 'missing'} is not a directory" in _refused(
            capsys, ["resize", *[x for kv in argv.items() for x in kv]])
    assert not out.exists() and (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.model", "mine", "zh.jsonl"]


def test_cli_names_a_missing_base(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lib.train.vocab", "extend", "--base", str(tmp_path / "nope"),
                        "--corpus", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "o")],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
