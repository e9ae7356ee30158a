"""Prompt formats the trained model must keep speaking.

The Alpaca strings are a compatibility contract: every Alpaca-style model, evaluation
harness and serving stack formats prompts with exactly these bytes, so a single changed
space silently shifts the model off its training distribution. Keep them exact; the tests
compare them character for character.

Vicuna v1.1 is the FastChat conversation format the Vicuna recipes trained on:

    {system} USER: {q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>

Conversations for models that ship their own chat template (SmolLM2, GLM, ...) are rendered
with that template instead (see `masking.encode_conversation`).
"""
from __future__ import annotations

from dataclasses import dataclass

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
        # Separators lead the next piece instead of trailing the previous one: tokenized
        # piece by piece, a trailing space would become a stray "▁" token in SentencePiece
        # vocabularies. The assistant's role tag belongs to the prompt (never a target).
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
