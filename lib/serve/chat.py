"""Chat with a checkpoint in Jupyter: streamed tokens, multi-turn, in the trained format.

    bot = ChatModel.load(run_model.model_dir, run_model.format)
    bot.say("Give me three tips for staying healthy.")   # prints tokens as they come
    bot.say("Make the second one shorter.")               # the history goes with it

Prompts are rendered by the one inference renderer (lib.serve.template.encode ->
lib.core.masking.prompt_ids, training's ids); generation uses the checkpoint's own EOS and stops
there. Greedy when temperature is 0, so base and tuned answers side by side are
reproducible.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Callable

from lib.core.model import eos_ids, load_for_inference
from lib.serve.template import encode


@dataclass
class GenerationParams:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 0.95
    repetition_penalty: float = 1.1  # evaluation's setting: small models loop without it


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
        streamer = TextIteratorStreamer(self.tok, skip_prompt=True, skip_special_tokens=True)
        p = self.params
        sample = p.temperature > 0
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=p.max_new_tokens,
                      do_sample=sample, repetition_penalty=p.repetition_penalty, streamer=streamer,
                      eos_token_id=eos_ids(self.tok, self.model), pad_token_id=self.tok.pad_token_id)
        if sample:
            kwargs.update(temperature=p.temperature, top_p=p.top_p)
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
        """One user turn: stream the answer to `echo` (stdout by default), keep it in the history."""
        echo = echo or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
        messages = self.history + [{"role": "user", "content": text}]
        pieces = []
        for piece in self.stream(messages):
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
        with out:
            print(f"\nyou: {text}\nmodel: ", end="")
            bot.say(text)
            print()

    def new(_):
        bot.reset()
        out.clear_output()

    box.observe(ask, names="value")
    reset.on_click(new)
    display(w.VBox([out, w.HBox([box, reset])]))
