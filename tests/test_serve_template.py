"""The chat template a server gets is the training renderer, token for token.

Servers only take Jinja; lib.serve.template generates it from the training templates. For
every format and for tokenizers with and without BOS (SmolLM2's GPT-2 BPE, LLaMA-style
SentencePiece in its legacy and non-legacy forms), rendering multi-turn conversations with
the generated template and tokenizing the one string gives exactly `prompt_ids`, the ids
training checks its prompt prefixes against.
"""
from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from lib.core.errors import UserError
from lib.serve.template import chat_template, encode, render
from train_tokenizers import llama_fast_tokenizer, llama_style_tokenizer, sp_tokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "Name a color."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": 'Sum 2+2\nplease {x} "q" {{ y }}'}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
     {"role": "assistant", "content": "d"}, {"role": "user", "content": "日本の首都は?"}],
]


def _tokenizers(embedded_model):
    return {
        "smollm2": AutoTokenizer.from_pretrained(embedded_model),
        "llama-fast": llama_fast_tokenizer(False),
        "llama-fast-legacy": llama_fast_tokenizer(True),
        "sentencepiece-legacy": sp_tokenizer(True),
        "llama-style": llama_style_tokenizer(),
    }


def test_generated_template_gives_training_prompt_ids(embedded_model):
    checked = 0
    for name, tok in _tokenizers(embedded_model).items():
        for fmt in ("alpaca", "vicuna_v1.1", "chat"):
            if fmt == "chat" and not tok.chat_template:
                continue
            jinja = chat_template(tok, fmt)
            for conv in CONVERSATIONS:
                text = tok.apply_chat_template(conv, chat_template=jinja, add_generation_prompt=True, tokenize=False)
                assert render(tok, fmt, conv) in text, (name, fmt)
                assert tok(text, add_special_tokens=False)["input_ids"] == encode(tok, fmt, conv), (name, fmt, conv)
                checked += 1
    assert checked >= 30


def test_alpaca_template_is_the_published_prompt(embedded_model):
    tok = AutoTokenizer.from_pretrained(embedded_model)
    text = tok.apply_chat_template([{"role": "user", "content": "Give three tips."}],
                                   chat_template=chat_template(tok, "alpaca"), add_generation_prompt=True, tokenize=False)
    assert text == ("Below is an instruction that describes a task. Write a response that appropriately completes "
                    "the request.\n\n### Instruction:\nGive three tips.\n\n### Response:")


def test_a_conversation_ending_on_an_answer_is_one_clear_error(embedded_model):
    tok = AutoTokenizer.from_pretrained(embedded_model)
    with pytest.raises(UserError, match="must end with a user message"):
        encode(tok, "alpaca", [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
