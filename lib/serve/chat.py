"""Chat with a checkpoint in Jupyter: streamed tokens, multi-turn, in the trained format.

    bot = ChatModel.load(run_model.model_dir, run_model.format)
    bot.say("Give me three tips for staying healthy.")   # the answer grows in place as tokens come
    bot.say("Make the second one shorter.")               # the history goes with it

Prompts are rendered by the one inference renderer (lib.serve.template.encode ->
lib.core.masking.prompt_ids, training's ids). Decoding is the endpoint's: `python -m lib.serve` runs
`transformers serve`, which generates with a copy of the checkpoint's own generation_config
and sets only what the request names (max_tokens, temperature, top_p). ChatModel does the
same (`generation_config`), so an answer here is the answer a client of the endpoint gets
(tests/test_serve.py compares them). In particular there is no repetition penalty: HF's
penalty also counts the prompt's tokens, and at 1.1 it pushed SmolLM2-135M's first token
("\n", which the Alpaca prompt contains) below its end-of-turn token, so the base model's
answer came out empty.
"""
from __future__ import annotations

import copy
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable

from lib.core.model import load_for_inference
from lib.serve.template import encode


@dataclass
class GenerationParams:
    """What a chat request sets; everything else is the checkpoint's own generation_config."""
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float | None = None  # None: the checkpoint's own (sampling only)


def generation_config(model, tok, params: GenerationParams):
    """The GenerationConfig `transformers serve` builds for a request with these settings: the
    model's generation_config, max_new_tokens, and temperature 0 as greedy. Settings that only
    sampling reads are cleared for greedy decoding (transformers warns about them otherwise;
    greedy ignores them either way), and padding gets the tokenizer's pad id (one prompt, no
    padding: this only keeps generate from warning that it picked one)."""
    cfg = copy.deepcopy(model.generation_config)
    cfg.max_new_tokens = params.max_new_tokens
    if params.temperature > 0:
        cfg.do_sample, cfg.temperature = True, params.temperature
        if params.top_p is not None:
            cfg.top_p = params.top_p
    else:
        cfg.do_sample, cfg.temperature, cfg.top_p, cfg.top_k = False, None, None, None
    if cfg.pad_token_id is None:
        cfg.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return cfg


def print_echo(prefix: str = "") -> Callable[[str], None]:
    """Streamed text on stdout, piece by piece on one line (a terminal, or an ipywidgets Output)."""
    sys.stdout.write(prefix)
    sys.stdout.flush()
    return lambda piece: (sys.stdout.write(piece), sys.stdout.flush())


def live_echo(prefix: str = "") -> Callable[[str], None]:
    """Streamed text that grows in place: in a notebook kernel one output, updated with every
    piece, so the saved notebook holds the answer as one block (each stdout write is its own
    output there, and a viewer shows one word per line); elsewhere `print_echo`."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return print_echo(prefix)
    from IPython.display import Pretty, display

    text = [prefix]
    handle = display(Pretty(prefix), display_id=True)

    def echo(piece: str) -> None:
        if piece:
            text.append(piece)
            handle.update(Pretty("".join(text)))
    return echo


@dataclass
class ChatModel:
    tok: object
    model: object
    format: str
    params: GenerationParams = field(default_factory=GenerationParams)
    history: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, model_dir, fmt: str, params: GenerationParams | None = None) -> "ChatModel":
        tok, model = load_for_inference(str(model_dir))
        return cls(tok, model, fmt, params or GenerationParams())

    def reset(self) -> None:
        self.history = []

    def stream(self, messages: list[dict]):
        """Yield the answer's text pieces as they are generated."""
        import torch
        from transformers import TextIteratorStreamer

        ids = torch.tensor([encode(self.tok, self.format, messages)])
        # No clean-up pass: it is meant for WordPiece, strips spaces before punctuation in BPE
        # text, and transformers warns on every decode that asks for it.
        streamer = TextIteratorStreamer(self.tok, skip_prompt=True, skip_special_tokens=True,
                                        clean_up_tokenization_spaces=False)
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
                      generation_config=generation_config(self.model, self.tok, self.params))
        errors: list[BaseException] = []

        def run():
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as e:  # re-raised in the caller's thread
                errors.append(e)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        yield from streamer
        worker.join()
        if errors:
            raise errors[0]

    def say(self, text: str, echo: Callable[[str], None] | None = None) -> str:
        """One user turn: stream the answer to `echo` (default: "you: ... / model: ..." growing
        in place, `live_echo`), keep it in the history, return it."""
        echo = echo or live_echo(f"you: {text}\nmodel: ")
        messages = self.history + [{"role": "user", "content": text}]
        pieces = []
        for piece in self.stream(messages):
            if not pieces:
                piece = piece.lstrip()  # the answer starts on the "model: " line, not below it
                if not piece:
                    continue
            pieces.append(piece)
            echo(piece)
        answer = "".join(pieces).strip()
        self.history = messages + [{"role": "assistant", "content": answer}]
        return answer


def side_by_side(models: dict[str, ChatModel], prompts: list[str], echo=None) -> list[dict]:
    """Each prompt answered by each model from a fresh history: [{prompt, <name>: answer, ...}]."""
    rows = []
    for prompt in prompts:
        row = {"prompt": prompt}
        for name, bot in models.items():
            if echo:
                echo(f"\n--- {name}: ")
            bot.reset()
            row[name] = bot.say(prompt, echo=echo or (lambda s: None))
            bot.reset()
        rows.append(row)
    return rows


def chat_widget(bot: ChatModel):
    """A text box and a transcript in Jupyter: type, press Enter, watch the answer stream in."""
    import ipywidgets as w
    from IPython.display import display

    # continuous_update=False: the value changes once, on Enter (on_submit is deprecated).
    box = w.Text(placeholder="Ask something, press Enter", continuous_update=False, layout=w.Layout(width="100%"))
    reset = w.Button(description="New conversation")
    out = w.Output(layout=w.Layout(border="1px solid #ccc", padding="4px"))

    def ask(change):
        text = (change["new"] or "").strip()
        if not text:
            return
        box.value = ""
        with out:  # streamed to stdout: the Output widget joins the pieces on one line as they come
            bot.say(text, echo=print_echo(f"\nyou: {text}\nmodel: "))
            print()

    def new(_):
        bot.reset()
        out.clear_output()

    box.observe(ask, names="value")
    reset.on_click(new)
    display(w.VBox([out, w.HBox([box, reset])]))
