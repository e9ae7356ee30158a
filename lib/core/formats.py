"""Prompt formats the trained model must keep speaking.

The Alpaca strings are a compatibility contract: every Alpaca-style model, evaluation
harness and serving stack formats prompts with exactly these bytes, so a single changed
space silently shifts the model off its training distribution. Keep them exact; the tests
compare them character for character.

Vicuna v1.1 is the FastChat conversation format the Vicuna recipes trained on:

    {system} USER: {q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>

Conversations for models that ship their own chat template (SmolLM2, GLM, ...) are rendered
with that template instead.

`render_prompt(fmt, messages, tok)` is THE prompt a model is served for its next answer, in
every format: evaluation (`lib.evaluate.answers`), serving and training all call it, and
`render_example` builds each training text from it, so the prompt prefix a model trains on
is, string for string, the prompt it is later sent (`lib.core.masking` checks the same
token for token).

A format has one name: `alpaca`, `vicuna_v1.1` (FastChat's name) or `chat`; `check_format`
is the one check of a name, used by cleaning, training, evaluation, serving and export.
"""
from __future__ import annotations

from dataclasses import dataclass

from lib.core.errors import UserError

# Stanford Alpaca's PROMPT_DICT, byte for byte.
ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
PROMPT_DICT = {"prompt_input": ALPACA_PROMPT_INPUT, "prompt_no_input": ALPACA_PROMPT_NO_INPUT}


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt for one record; an empty or whitespace-only input uses the no-input form."""
    if input and input.strip():
        return ALPACA_PROMPT_INPUT.format(instruction=instruction, input=input)
    return ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)


@dataclass(frozen=True)
class VicunaTemplate:
    """FastChat's `vicuna_v1.1` conversation: two roles, space after a user turn, EOS after an answer."""

    system: str = (
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    )
    user: str = "USER"
    assistant: str = "ASSISTANT"
    sep: str = " "

    def render(self, messages: list[dict], eos: str) -> str:
        """The whole conversation as one string; ending on a user turn leaves "ASSISTANT:" open."""
        out = self.system_prefix(messages)
        first = True
        for m in messages:
            if m["role"] == "user":
                out += self.user_piece(m["content"], after_system=first)
                first = False
            elif m["role"] == "assistant":
                out += self.assistant_piece(m["content"]) + eos
        return out

    def system_prefix(self, messages: list[dict]) -> str:
        return next((m["content"] for m in messages if m["role"] == "system"), self.system)

    def user_piece(self, content: str, after_system: bool) -> str:
        # FastChat's ADD_COLON_TWO layout: "{system} USER: q ASSISTANT: a</s>USER: ...". The
        # space between the tag and an answer is part of the answer's text (" a"), so the
        # open prompt ends in "ASSISTANT:" exactly as FastChat serves it.
        lead = self.sep if after_system else ""
        return f"{lead}{self.user}: {content}{self.sep}{self.assistant}:"

    def assistant_piece(self, content: str) -> str:
        return " " + content


VICUNA_V1_1 = VicunaTemplate()

# ShareGPT speaker names -> chat roles.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant",
                  "bard": "assistant", "bing": "assistant", "assistant": "assistant", "system": "system"}


def sharegpt_to_messages(conversations: list[dict]) -> list[dict]:
    """ShareGPT `[{from, value}]` -> `[{role, content}]`; unknown speakers raise KeyError."""
    return [{"role": SHAREGPT_ROLES[c["from"]], "content": c["value"]} for c in conversations]


FORMATS = ("alpaca", "vicuna_v1.1", "chat")


def turns_to_messages(turns: list[str], answers: list[str]) -> list[dict]:
    """Questions and the answers given so far -> messages ending on the turn to answer next."""
    messages: list[dict] = []
    for q, a in zip(turns, answers):
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": turns[len(answers)]})
    return messages


def check_format(fmt: str, tok=None) -> str:
    """`fmt` when it names a prompt format (and, given a tokenizer, one it can render), else one
    UserError. Evaluation once called `vicuna_v1.1` "vicuna": that name now gets a line naming
    the one name, not a silent alias."""
    if fmt == "vicuna":
        raise UserError("prompt format 'vicuna' is named 'vicuna_v1.1' (FastChat's name for it): use 'vicuna_v1.1'")
    if fmt not in FORMATS:
        raise UserError(f"unknown prompt format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "chat" and tok is not None and not getattr(tok, "chat_template", None):
        raise UserError("the tokenizer has no chat template: use prompt format 'alpaca' or 'vicuna_v1.1' for this model")
    return fmt


def _alpaca_prompt_for(messages: list[dict]) -> str:
    # Alpaca has no multi-turn format: earlier exchanges become the input, followed by the
    # asked turn's own input (an Alpaca record's `input` field), if it has one.
    body = [m for m in messages if m["role"] != "system"]
    *earlier, last = body
    pairs = zip(earlier[0::2], earlier[1::2])
    history = "\n\n".join(f"Earlier request: {q['content']}\nEarlier response: {a['content']}" for q, a in pairs)
    own = last.get("input") or ""
    return alpaca_prompt(last["content"], "\n\n".join(x for x in (history, own) if x))


def render_prompt(fmt: str, messages: list[dict], tok) -> str:
    """The text a model of format `fmt` is sent to write the next assistant turn.

    `messages` ends on the user turn to answer (an Alpaca instruction may carry its record's
    `input` in the message's "input" key). The result ends where the answer begins:
    "### Response:", "ASSISTANT:", or the chat template's generation prompt.
    """
    fmt = check_format(fmt, tok)
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("render_prompt needs messages that end on a user turn")
    if fmt == "alpaca":
        return _alpaca_prompt_for(messages)
    if fmt == "vicuna_v1.1":
        return VICUNA_V1_1.render(messages, eos=tok.eos_token or "")  # ends open on "ASSISTANT:"
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


class RenderError(ValueError):
    """The format cannot render this conversation as one prefix-consistent text."""


def render_example(fmt: str, messages: list[dict], tok) -> tuple[str, list[tuple[int, int]]]:
    """One training text for a whole example, and the character span of every answer.

    Each span starts where `render_prompt(fmt, messages[:i], tok)` ends -- the text before
    it IS that prompt, checked here -- and ends after the answer's EOS string. Text after
    an EOS (e.g. the newline after "<|im_end|>") belongs to the next prompt. Trailing user
    turns without an answer are left out: they would carry no label.
    """
    fmt = check_format(fmt, tok)
    eos = tok.eos_token or ""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    messages = messages[: last + 1]
    if fmt == "alpaca":
        # One exchange per Alpaca example (sharegpt_to_alpaca splits conversations): with
        # earlier turns, only the last answer is a target and the rest is its input, as served.
        prompt = render_prompt(fmt, messages[:-1], tok)
        text = prompt + messages[-1]["content"] + eos
        return text, [(len(prompt), len(text))]
    if fmt == "vicuna_v1.1":
        text = VICUNA_V1_1.render(messages, eos)
    else:
        text = tok.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = render_prompt(fmt, messages[:i], tok)
        through = VICUNA_V1_1.render(messages[: i + 1], eos) if fmt == "vicuna_v1.1" else \
            tok.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (text.startswith(through) and through.startswith(prompt)):
            raise RenderError(f"turn {i}: the chat template is not prefix-stable (the rendered conversation "
                              "does not start with the prompt served for this turn)")
        end = through.rfind(eos) + len(eos) if eos else len(through)
        if end <= len(prompt) or not eos:
            raise RenderError(f"turn {i} does not end in EOS ({eos!r}) under the template")
        spans.append((len(prompt), end))
    return text, spans
