"""Real tokenizers built offline for the training tests (no hub): trained here with `tokenizers`.

* `llama_style_tokenizer()`: a SentencePiece-like BPE (Metaspace "▁" pre-tokenizer, byte
  fallback, `<s>` prepended by the post-processor, `</s>` EOS) -- the LLaMA/Vicuna layout.
* `chinese_unigram_tokenizer()`: a Unigram model (what BLOOMZ/ChatGLM-era Chinese models use
  in spirit) trained on mixed Chinese/English text, with a zephyr-style chat template.

And one real LLaMA-architecture SentencePiece model: Mistral-7B v0.1's 32K `tokenizer.model`
(LLaMA's format: BPE with byte fallback, "▁" dummy prefix, <s>/</s>), shipped inside the
`mistral-common` wheel (installed --no-deps as test data by the Makefile). It is loaded four
ways, the ways LLaMA-family checkpoints are tokenized in the wild:

* `sp_tokenizer(legacy=True)`: the `sentencepiece` library itself, through transformers'
  SentencePieceBackend (the old slow LlamaTokenizer): every piece between special tokens
  gets the dummy "▁" (so "</s>USER" -> "</s> ▁US ER").
* `sp_tokenizer(legacy=False)`: the same with the dummy prefix only at the start of text.
* `llama_fast_tokenizer(legacy=True/False)`: transformers' LlamaTokenizer (the `tokenizers`
  backend converted from the .model file), Metaspace prepend "always" or "first".

BLOOM's and GLM's own tokenizer files ship in no PyPI package, so they are not here.
"""
from __future__ import annotations

from functools import lru_cache

EN = [
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "Give three tips for staying healthy. Eat a balanced diet, exercise regularly and sleep well.",
    "The capital of France is Paris. What is the sum of two and three? The sum is five.",
    "A chat between a curious user and an artificial intelligence assistant. USER: ASSISTANT:",
    "Instruction Input Response ### Hello there friend, how are you today? I am fine, thank you.",
] * 8
ZH = [
    "请给出三个保持健康的建议。均衡饮食，经常锻炼，保证睡眠。",
    "法国的首都是巴黎。二加三等于多少？等于五。",
    "写一首关于春天的诗。春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "你好，请问你是谁？我是一个人工智能助手，很高兴为你服务。",
    "下面是一个描述任务的指令。请写出恰当完成该请求的回答。",
] * 8

ZEPHYR_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@lru_cache(maxsize=None)
def llama_style_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tk.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="first")])
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials + byte_tokens, show_progress=False)
    tk.train_from_iterator(EN, trainer)
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                      special_tokens=[("<s>", tk.token_to_id("<s>"))])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.chat_template = ZEPHYR_TEMPLATE
    return tok


@lru_cache(maxsize=None)
def chinese_unigram_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.Unigram())
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=500, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                                      initial_alphabet=list("|<>!?'\n:#.,0123456789"), show_progress=False)
    tk.train_from_iterator(ZH + EN, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    tok.chat_template = ZEPHYR_TEMPLATE
    return tok


MISTRAL_INSTRUCT_TEMPLATE = (  # Mistral-7B-Instruct v0.1's layout: [INST] q [/INST]a</s>
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}"
)
SP_KINDS = ("sp_legacy", "sp", "fast_legacy", "fast")


def mistral_sp_model() -> str:
    """Path of Mistral-7B v0.1's tokenizer.model inside the installed mistral-common wheel."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("mistral_common")
    if spec is None:
        raise RuntimeError("mistral-common is not installed: run `make setup` (it installs it --no-deps)")
    return os.path.join(spec.submodule_search_locations[0], "data", "tokenizer.model.v1")


def sp_backend(model_file: str, legacy: bool):
    """transformers' SentencePieceBackend over a LLaMA-format `model_file` (BOS added)."""
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    return SentencePieceBackend(vocab_file=model_file, legacy=legacy, bos_token="<s>", eos_token="</s>",
                                unk_token="<unk>", special_tokens_pattern="bos")


@lru_cache(maxsize=None)
def sp_tokenizer(legacy: bool):
    tok = sp_backend(mistral_sp_model(), legacy)
    tok.chat_template = MISTRAL_INSTRUCT_TEMPLATE
    return tok


@lru_cache(maxsize=None)
def llama_fast_tokenizer(legacy: bool):
    import os
    import tempfile

    from transformers import LlamaTokenizer

    d = tempfile.mkdtemp(prefix="mistral-sp-")  # from_pretrained converts a directory's tokenizer.model
    os.symlink(mistral_sp_model(), os.path.join(d, "tokenizer.model"))
    tok = LlamaTokenizer.from_pretrained(d, legacy=legacy, add_bos_token=True)
    tok.chat_template = MISTRAL_INSTRUCT_TEMPLATE
    return tok


def sp_kind(kind: str):
    """One of SP_KINDS -> the tokenizer."""
    return {"sp_legacy": lambda: sp_tokenizer(True), "sp": lambda: sp_tokenizer(False),
            "fast_legacy": lambda: llama_fast_tokenizer(True), "fast": lambda: llama_fast_tokenizer(False)}[kind]()
