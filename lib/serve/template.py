"""The trained prompt format as a chat template, for servers and GGUF files.

There is one renderer of inference prompts: `lib.core.formats.render_prompt` (text) and
`lib.core.masking.prompt_ids` (its ids, with the BOS training puts first); training checks
that every prompt prefix it trains on has exactly those ids. Servers (transformers serve,
llama.cpp, vLLM, Ollama) take a Jinja chat template instead of Python, so this module
*generates* that Jinja from the same constants (the Alpaca PROMPT_DICT strings, the Vicuna
template's fields) and the tests render both over multi-turn conversations and require the
same text and the same token ids.

A model trained with its own chat template ("chat") keeps that template unchanged. Alpaca
has no system slot and no multi-turn form: the renderer ignores system messages and gives
earlier exchanges as the input, and so does the generated template.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from tokenizers import Tokenizer

from lib.core.errors import UserError
from lib.core.files import atomic_write_json, publish_dir
from lib.core.formats import ALPACA_PROMPT_INPUT, ALPACA_PROMPT_NO_INPUT, VICUNA_V1_1, check_format, render_prompt
from lib.core.masking import bos_prefix, prompt_ids


def render(tok, fmt: str, messages: list[dict]) -> str:
    """The prompt the model continues for the last user message of `messages`."""
    if not messages or messages[-1]["role"] != "user":
        raise UserError("the conversation must end with a user message: there is nothing to answer")
    return render_prompt(fmt, messages, tok)


def encode(tok, fmt: str, messages: list[dict]) -> list[int]:
    """Token ids of `render(...)`, with training's BOS."""
    render(tok, fmt, messages)  # the one-line error for a conversation that ends on an answer
    return prompt_ids(fmt, messages, tok)


def _lit(text: str) -> str:
    # A Jinja string literal: Jinja decodes Python-style escapes, which JSON's are a subset of.
    return "{{ " + json.dumps(text) + " }}"


def _split(template: str, *names: str) -> list[str]:
    """'a{x}b{y}c' -> ['a', 'b', 'c'] for names x, y (in order)."""
    pieces, rest = [], template
    for n in names:
        head, sep, rest = rest.partition("{" + n + "}")
        if not sep:
            raise ValueError(f"placeholder {{{n}}} not in template")
        pieces.append(head)
    return pieces + [rest]


def _alpaca_jinja() -> str:
    # Mirrors render_prompt: system messages are skipped; the asked turn is the last one,
    # earlier (request, response) pairs become the input ("Earlier request: ...").
    n0, n1 = _split(ALPACA_PROMPT_NO_INPUT, "instruction")
    i0, i1, i2 = _split(ALPACA_PROMPT_INPUT, "instruction", "input")
    return (
        "{%- set body = messages | rejectattr('role', 'equalto', 'system') | list -%}"
        "{%- set ns = namespace(h=[]) -%}"
        "{%- for k in range(0, body | length - 1, 2) -%}{%- if k + 1 < body | length - 1 -%}"
        "{%- set ns.h = ns.h + ['Earlier request: ' ~ body[k].content ~ '\\nEarlier response: ' ~ body[k + 1].content] -%}"
        "{%- endif -%}{%- endfor -%}"
        "{%- if ns.h -%}" + _lit(i0) + "{{ body[-1].content }}" + _lit(i1) + "{{ ns.h | join('\\n\\n') }}" + _lit(i2)
        + "{%- else -%}" + _lit(n0) + "{{ body[-1].content }}" + _lit(n1) + "{%- endif -%}"
    )


def _vicuna_jinja() -> str:
    V = VICUNA_V1_1
    # Mirrors VicunaTemplate.render: the first system message (or the default), then the
    # turns in order; the first user turn is led by the separator.
    return (
        "{%- set sys = messages | selectattr('role', 'equalto', 'system') | list -%}"
        "{%- if sys -%}{{ sys[0].content }}{%- else -%}" + _lit(V.system) + "{%- endif -%}"
        "{%- set ns = namespace(first=true) -%}"
        "{%- for m in messages -%}"
        "{%- if m.role == 'user' -%}"
        "{%- if ns.first -%}" + _lit(V.sep) + "{%- endif -%}"
        + _lit(V.user + ": ") + "{{ m.content }}" + _lit(V.sep + V.assistant + ":")
        + "{%- set ns.first = false -%}"
        "{%- elif m.role == 'assistant' -%}" + _lit(V.assistant_piece("")) + "{{ m.content }}{{ eos_token }}"
        "{%- endif -%}{%- endfor -%}"
    )


def chat_template(tok, fmt: str) -> str:
    """Jinja that renders what `encode(tok, fmt, messages)` encodes (BOS included)."""
    fmt = check_format(fmt)
    if fmt == "chat":
        if not getattr(tok, "chat_template", None):
            raise UserError("this checkpoint was trained with a chat template but has none: re-run training")
        return tok.chat_template
    body = _alpaca_jinja() if fmt == "alpaca" else _vicuna_jinja()
    if not bos_prefix(tok):
        return body
    # Training sends [BOS] + ids(text); a server tokenizes the template's one string. After a
    # special token, SentencePiece-style tokenizers differ: legacy ones still put "▁" before
    # the text, Metaspace-"first" ones do not (so "<s>Below" loses the "▁Below" training
    # saw) unless a space follows the BOS. Pick the joint that reproduces training's ids.
    probe = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"},
             {"role": "user", "content": "Name a color."}]
    want = prompt_ids(fmt, probe, tok)
    for joint in ("{{ bos_token }}", "{{ bos_token }}" + _lit(" ")):
        text = tok.apply_chat_template(probe, chat_template=joint + body, add_generation_prompt=True, tokenize=False)
        if tok(text, add_special_tokens=False)["input_ids"] == want:
            return joint + body
    raise UserError(f"no chat template reproduces training's prompt ids for this tokenizer ({type(tok).__name__}): "
                    "serve it with lib.serve.chat (Python) instead of a server")


def serving_checkpoint(run_model, out: str | os.PathLike | None = None) -> Path:
    """A view of the run's checkpoint whose tokenizer carries the trained format as its chat
    template: weights are symlinked (no copy), tokenizer files rewritten. Servers and the GGUF
    converter read the template from here. Rebuilt atomically each time (it is cheap)."""
    from transformers import AutoTokenizer

    src = Path(run_model.model_dir)
    out = Path(out or Path(run_model.run_dir) / "serve" / "checkpoint")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        tok = AutoTokenizer.from_pretrained(src)
        tok.chat_template = chat_template(tok, run_model.format)
        tok.save_pretrained(tmp)
        _byte_level_as_gpt2(tmp / "tokenizer.json")
        written = {p.name for p in tmp.iterdir()}
        for p in src.iterdir():
            if p.is_file() and p.name not in written and not p.name.startswith("."):
                os.symlink(p.resolve(), tmp / p.name)
        publish_dir(tmp, out, note=json.dumps({"format": run_model.format, "source": str(src)}) + "\n")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


_PROBES = ("Hello world! 123 4567 über naïve 日本語 ", "  two  spaces\n\ttab <|im_end|> end", "a🙂b")


def _byte_level_as_gpt2(path: Path) -> None:
    """Write a byte-level BPE tokenizer in its plain GPT-2 form.

    transformers' GGUF loader (lib.core.model converts the embedded model from a GGUF) writes
    SmolLM2's byte-level BPE with `byte_fallback: true` and a SentencePiece-style decoder.
    Encoding is unaffected (the ByteLevel pre-tokenizer maps every byte to a vocabulary
    symbol, so the fallback never fires), but llama.cpp's converter reads those two fields as
    a LLaMA SentencePiece vocabulary and would write a `llama` tokenizer into the GGUF. The
    GPT-2 form (no byte fallback, ByteLevel decoder) is what the original tokenizer.json has;
    the change is kept only if encoding and decoding of probe texts stay identical."""
    if not path.is_file():
        return
    spec = json.loads(path.read_text(encoding="utf-8"))
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    if not (model.get("type") == "BPE" and model.get("byte_fallback") and pre.get("type") == "ByteLevel"):
        return
    before = Tokenizer.from_file(str(path))
    model["byte_fallback"] = False
    spec["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    after = Tokenizer.from_str(json.dumps(spec))
    for text in _PROBES:
        ids = before.encode(text).ids
        if after.encode(text).ids != ids or after.decode(ids) != before.decode(ids):
            return  # not equivalent for this tokenizer: leave it as it is
    atomic_write_json(path, spec)
