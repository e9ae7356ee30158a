"""Masking on real tokenizers: labels cover exactly the answer tokens plus EOS.

Tokenizers: the embedded SmolLM2 one (GPT-2-style byte BPE, ChatML template), the real
LLaMA-format SentencePiece model (Mistral-7B v0.1's, through transformers' LlamaTokenizer,
non-legacy) and two built offline here (tests/train_tokenizers.py): a LLaMA-style
SentencePiece-like BPE and a Chinese-capable Unigram. Cases: single-turn with and without
input, multi-turn (the model's chat template and Vicuna v1.1), truncated, Chinese, and
samples that must be reported. Every example is one tokenization of its whole text.
Comparisons with Stanford Alpaca and FastChat themselves are in tests/test_parity_*.py.
"""
from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from lib.core.errors import UserError
from lib.core.masking import IGNORE_INDEX, encode_record, encode_records, ensure_pad_token, prompt_ids
from lib.core.formats import ALPACA_PROMPT_INPUT, ALPACA_PROMPT_NO_INPUT, VICUNA_V1_1, alpaca_prompt, render_prompt
from train_tokenizers import chinese_unigram_tokenizer, llama_fast_tokenizer, llama_style_tokenizer


@pytest.fixture(scope="module")
def smol(embedded_model):
    return AutoTokenizer.from_pretrained(embedded_model)


@pytest.fixture(scope="module", params=["smollm2", "mistral_sp", "llama_style", "chinese_unigram"])
def tok(request, embedded_model):
    if request.param == "smollm2":
        return AutoTokenizer.from_pretrained(embedded_model)
    return {"mistral_sp": lambda: llama_fast_tokenizer(False), "llama_style": llama_style_tokenizer,
            "chinese_unigram": chinese_unigram_tokenizer}[request.param]()


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def labelled_runs(labels):
    """Maximal runs of consecutive labelled positions, as lists of token ids."""
    runs, cur = [], []
    for lab in labels:
        if lab == IGNORE_INDEX:
            if cur:
                runs.append(cur)
            cur = []
        else:
            cur.append(lab)
    return runs + ([cur] if cur else [])


def test_alpaca_strings_are_the_stanford_bytes():
    # The compatibility contract, spelled out independently of the module's constants.
    assert ALPACA_PROMPT_NO_INPUT == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\n{instruction}\n\n### Response:")
    assert ALPACA_PROMPT_INPUT == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n"
        "### Input:\n{input}\n\n### Response:")
    assert alpaca_prompt("Add", "2 and 3").endswith("### Input:\n2 and 3\n\n### Response:")
    assert "### Input" not in alpaca_prompt("Add", "   ")


def test_vicuna_render_matches_fastchat_layout():
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye!"}]
    assert VICUNA_V1_1.render(msgs, "</s>") == (
        VICUNA_V1_1.system + " USER: Hi ASSISTANT: Hello!</s>USER: Bye ASSISTANT: Bye!</s>")


@pytest.mark.parametrize("inp", ["", "2 and 3"])
def test_alpaca_labels_are_exactly_response_plus_eos(tok, inp):
    rec = {"instruction": "Add the numbers. 法国的首都", "input": inp, "output": "The sum is 5. 等于五。"}
    ex, truncated = encode_record(rec, tok, "alpaca", 512)
    assert not truncated
    # One tokenization of prompt + answer + EOS, as Stanford Alpaca does it...
    prompt_text = alpaca_prompt(rec["instruction"], inp)
    whole = tok(prompt_text + rec["output"] + tok.eos_token)["input_ids"]
    prompt = tok(prompt_text)["input_ids"]
    assert ex["input_ids"] == whole and whole[: len(prompt)] == prompt
    # ...and exactly the tokens after the prompt inference sends carry labels, EOS last.
    assert ex["labels"] == [IGNORE_INDEX] * len(prompt) + whole[len(prompt):]
    assert ex["labels"][-1] == tok.eos_token_id


def test_alpaca_decoded_target_on_smollm2(smol):
    ex, _ = encode_record({"instruction": "Say hi", "output": "Hello there!"}, smol, "alpaca", 512)
    target = [t for t in ex["labels"] if t != IGNORE_INDEX]
    assert smol.decode(target) == "Hello there!<|im_end|>"
    assert smol.decode(ex["input_ids"]).startswith(alpaca_prompt("Say hi"))


def test_truncation_cuts_the_answer_but_keeps_eos(tok):
    rec = {"instruction": "Write", "output": " ".join(["word"] * 300)}
    prompt_len = len(tok(alpaca_prompt("Write"))["input_ids"])
    whole = tok(alpaca_prompt("Write") + rec["output"])["input_ids"]
    ex, truncated = encode_record(rec, tok, "alpaca", prompt_len + 10)
    assert truncated
    assert len(ex["input_ids"]) == prompt_len + 10
    target = [t for t in ex["labels"] if t != IGNORE_INDEX]
    assert target[:-1] == whole[prompt_len: prompt_len + 9] and target[-1] == tok.eos_token_id


def test_prompt_too_long_is_dropped_and_reported(tok):
    recs = [{"id": "long", "instruction": "describe " * 200, "output": "ok"},
            {"id": "fine", "instruction": "Say hi", "output": "hi"},
            {"id": "empty", "instruction": "Say hi", "output": "  "}]
    room = len(tok(alpaca_prompt("Say hi"))["input_ids"]) + 8
    out, report = encode_records(recs, tok, fmt="alpaca", max_length=room)
    assert report.total == 3 and report.kept == len(out) == 1
    reasons = {s["id"]: s["reason"] for s in report.samples}
    assert reasons["long"].startswith("prompt too long") and reasons["empty"].startswith("empty response")
    assert report.dropped["prompt too long"] == 1
    assert "dropped" in report.summary()


CONV = {"id": "c1", "conversations": [
    {"from": "human", "value": "What is the capital of France?"},
    {"from": "gpt", "value": "Paris."},
    {"from": "human", "value": "请写一首关于春天的诗。"},
    {"from": "gpt", "value": "春眠不觉晓，处处闻啼鸟。"},
]}


def test_multiturn_chat_template_trains_only_assistant_turns(tok):
    ex, _ = encode_record(CONV, tok, "chat", 1024)
    runs = labelled_runs(ex["labels"])
    answers = [c["value"] for c in CONV["conversations"] if c["from"] == "gpt"]
    assert len(runs) == len(answers)
    for run, answer in zip(runs, answers):
        assert run[-1] == tok.eos_token_id and tok.eos_token_id not in run[:-1]
        # The run is the answer's tokens as the template places them (after the role header).
        assert tok.decode(run[:-1]).strip() == tok.decode(ids(tok, answer)).strip()
    # No user text is ever a target.
    assert sum(len(r) for r in runs) == sum(lab != IGNORE_INDEX for lab in ex["labels"])


def test_multiturn_chatml_decoded_on_smollm2(smol):
    ex, _ = encode_record(CONV, smol, "chat", 1024)
    runs = [smol.decode(r) for r in labelled_runs(ex["labels"])]
    assert runs == ["Paris.<|im_end|>", "春眠不觉晓，处处闻啼鸟。<|im_end|>"]
    full = smol.apply_chat_template(
        [{"role": "user" if c["from"] == "human" else "assistant", "content": c["value"]} for c in CONV["conversations"]],
        tokenize=False)
    assert smol.decode(ex["input_ids"]) == full


def test_multiturn_vicuna_v11(tok):
    ex, _ = encode_record(CONV, tok, "vicuna_v1.1", 1024)
    msgs = [{"role": "user" if c["from"] == "human" else "assistant", "content": c["value"]}
            for c in CONV["conversations"]]
    # The whole conversation is one tokenization of FastChat's string.
    assert ex["input_ids"] == tok(VICUNA_V1_1.render(msgs, tok.eos_token))["input_ids"]
    runs = labelled_runs(ex["labels"])
    answers = [c["value"] for c in CONV["conversations"] if c["from"] == "gpt"]
    assert len(runs) == 2 and all(r[-1] == tok.eos_token_id for r in runs)
    assert [tok.decode(r[:-1]).strip() for r in runs] == [tok.decode(ids(tok, a)).strip() for a in answers]


def test_boundary_merge_is_reported_not_shifted(smol):
    # "Response:" + "- a list" tokenizes as ":-": no split gives the prompt inference sends.
    recs = [{"id": "list", "instruction": "List two colours.", "output": "- Red\n- Blue"},
            {"id": "fine", "instruction": "Name a colour.", "output": "Red."}]
    out, report = encode_records(recs, smol, fmt="alpaca", max_length=512)
    assert len(out) == 1 and report.dropped["boundary merge"] == 1
    assert report.samples[0]["id"] == "list" and "inference sends" in report.samples[0]["reason"]


def test_multiturn_truncation_keeps_eos_on_the_last_answer(smol):
    ex, truncated = encode_record(CONV, smol, "chat", 60)
    assert truncated and len(ex["input_ids"]) <= 60
    runs = labelled_runs(ex["labels"])
    assert runs and all(r[-1] == smol.eos_token_id for r in runs)


def test_unmaskable_conversations_are_reported_not_zeroed(smol):
    bad = [
        {"id": "no-answer", "conversations": [{"from": "human", "value": "hi"}]},
        {"id": "gpt-first", "conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "yo"}]},
        {"id": "speaker", "conversations": [{"from": "alien", "value": "hi"}]},
    ]
    out, report = encode_records(bad + [CONV], smol, fmt="chat", max_length=512)
    assert len(out) == 1 and report.kept == 1
    assert {s["id"] for s in report.samples} == {"no-answer", "gpt-first", "speaker"}


def test_template_that_is_not_prefix_stable_is_reported(smol):
    weird = AutoTokenizer.from_pretrained(smol.name_or_path)
    # Renders the last message differently from earlier ones: prefixes do not nest.
    weird.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
                           "{% if loop.last %} [LAST]{% endif %}{{ eos_token }}{% endfor %}"
                           "{% if add_generation_prompt %}assistant:{% endif %}")
    out, report = encode_records([CONV], weird, fmt="chat", max_length=512)
    assert out == [] and report.samples[0]["reason"].startswith("tokenization mismatch")


def test_pad_token_is_distinct_from_eos():
    tok = llama_style_tokenizer()
    tok.pad_token = tok.eos_token
    added = ensure_pad_token(tok)
    assert tok.pad_token_id != tok.eos_token_id and not added  # <unk> was available


def test_unknown_format_is_a_user_error(smol):
    with pytest.raises(UserError, match="unknown prompt format"):
        encode_record({"instruction": "a", "output": "b"}, smol, "alpaca_v2", 64)
    # One name per format: "vicuna" (evaluation's old alias) is refused with the one name.
    with pytest.raises(UserError, match="'vicuna' is named 'vicuna_v1.1'"):
        encode_record({"instruction": "a", "output": "b"}, smol, "vicuna", 64)


def test_render_prompt_is_one_renderer_for_every_format(smol):
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"}]
    assert render_prompt("vicuna_v1.1", msgs, smol) == \
        VICUNA_V1_1.system + " USER: Hi ASSISTANT: Hello!<|im_end|>USER: Bye ASSISTANT:"
    assert render_prompt("alpaca", msgs[:1], smol) == alpaca_prompt("Hi")
    assert render_prompt("chat", msgs, smol).endswith("<|im_start|>assistant\n")
    served = smol.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert prompt_ids("chat", msgs, smol) == ids(smol, served)
    bare = AutoTokenizer.from_pretrained(smol.name_or_path)
    bare.chat_template = None
    with pytest.raises(UserError, match="no chat template"):
        render_prompt("chat", msgs, bare)
    with pytest.raises(ValueError, match="end on a user turn"):
        render_prompt("alpaca", msgs[:2], smol)
