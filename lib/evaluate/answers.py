"""Answers to the questions from any number of models, cached per (model, question).

Three kinds of "model":

* `hf`: a local Hugging Face checkpoint (the embedded model, a fine-tuned run's `model/`),
  answered in-process with batched greedy `model.generate`. The prompt format is per model:
  `chat` renders the tokenizer's own chat template, `alpaca` the exact Alpaca strings from
  `lib.core.formats` (what an Alpaca-tuned model was trained on), `vicuna_v1.1` FastChat's
  conversation: the names training's recipes use (`lib.core.formats.FORMATS`).
* `endpoint`: any OpenAI-compatible server through `lib.core.client.chat`; every call is metered
  into the ledger (phase "evaluation"), and a billed one (`Endpoint.billed_as`) is first
  reserved at its worst case against the evaluation cap, as judge calls are.
* `premade`: answers that came with the question set (text-davinci-003 on Self-Instruct's
  252, an AlpacaEval baseline).

`models` maps a name to a spec string:

    {"base": "embedded",                       # the embedded SmolLM2 checkpoint
     "tuned": "runs/x/model",                  # a checkpoint directory ({run_dir} is expanded)
     "gpt": "endpoint:https://api.openai.com/v1|gpt-4o-mini-2024-07-18|OPENAI_API_KEY",
     "text-davinci-003": "premade"}            # or "premade:<name in the question set>"

Answers land in an append-only `answers.jsonl`, one line per (model, question) with one
answer per turn, written as soon as its batch finishes: a re-run generates only what is
missing. Changing a model's weights, prompt format or max_new_tokens under the same name
does not invalidate cached answers: use a new eval directory (or a new model name).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from lib.budget.guard import hold, refuse_unpriced
from lib.core.client import Endpoint, chat, make_client
from lib.core.errors import UserError
from lib.core.model import eos_ids, load_for_inference, model_fingerprint, resolve_model
from lib.core.paths import repo_path
from lib.evaluate.questions import Question, QuestionSet
from lib.evaluate.store import JsonlStore
from lib.core.formats import check_format, turns_to_messages
from lib.core.masking import prompt_ids  # answers are prompted exactly as training saw them

ANSWER_KEY = ("model", "question_id")


@dataclass
class ModelSpec:
    name: str
    kind: str  # hf | endpoint | premade
    path: str = ""  # hf: checkpoint directory
    prompt_format: str = "chat"
    base_url: str = ""
    model: str = ""  # endpoint: the served model's name; premade: the name in the question set
    api_key_env: str = "OPENAI_API_KEY"
    price_model: str | None = None

    def endpoint(self):
        return Endpoint(base_url=self.base_url, model=self.model, api_key_env=self.api_key_env,
                        price_model=self.price_model)

    def public(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in ("", None)}


def parse_models(models: dict[str, str], prompt_formats: dict[str, str] | None = None,
                 run_dir: str | Path = "") -> list[ModelSpec]:
    """Notebook parameters -> ModelSpecs, with one clear line for each thing that is wrong."""
    if not isinstance(models, dict) or not models:
        raise UserError("models must map names to specs, e.g. {'base': 'embedded', 'tuned': '{run_dir}/model'}")
    prompt_formats = prompt_formats or {}
    unknown = set(prompt_formats) - set(models)
    if unknown:
        raise UserError(f"prompt_formats names {sorted(unknown)} which are not in models {sorted(models)}: fix the names")
    specs = []
    for name, spec in models.items():
        spec = str(spec).replace("{run_dir}", str(run_dir))
        try:
            fmt = check_format(prompt_formats.get(name, "chat"))
        except UserError as e:
            raise UserError(f"model {name!r}: {e}") from None
        if spec.startswith("endpoint:"):
            parts = spec[len("endpoint:"):].split("|")
            if len(parts) < 2 or not parts[0] or not parts[1]:
                raise UserError(f"model {name!r}: write endpoint:<base_url>|<model>[|<api_key_env>[|<price_model>]]")
            specs.append(ModelSpec(name, "endpoint", base_url=parts[0], model=parts[1],
                                   api_key_env=parts[2] if len(parts) > 2 and parts[2] else "OPENAI_API_KEY",
                                   price_model=parts[3] if len(parts) > 3 and parts[3] else None))
        elif spec == "premade" or spec.startswith("premade:"):
            specs.append(ModelSpec(name, "premade", model=spec.partition(":")[2] or name))
        else:
            path = repo_path(resolve_model(spec))  # a relative checkpoint dir is under the repository
            if not (path / "config.json").is_file():
                raise UserError(f"model {name!r}: {path} holds no Hugging Face checkpoint (config.json): "
                                "train it first (03_train) or fix the path in models")
            specs.append(ModelSpec(name, "hf", path=str(path), prompt_format=fmt))
    return specs


# ----------------------------------------------------------------------------- prompts
# Prompts come from the one renderer training, evaluation and serving share:
# lib.core.formats.render_prompt gives the text, lib.core.masking.prompt_ids its ids
# (training checks that every prompt prefix it trains on has exactly these ids).


# ----------------------------------------------------------------------------- generation
@dataclass
class GenerationSettings:
    max_new_tokens: int = 64
    batch_size: int = 8
    # Greedy decoding: answers are reproducible and comparable between models; the mild
    # repetition penalty keeps tiny models from looping until max_new_tokens.
    repetition_penalty: float = 1.1
    # > 0: sampled instead (preference pairs need k different answers to one prompt,
    # lib/evaluate/pairs.py); the caller seeds torch for reproducibility.
    temperature: float = 0.0


def generate_batch(tok, model, conversations: list[list[dict]], settings: GenerationSettings,
                   fmt: str = "chat") -> list[tuple[str, int]]:
    """(answer text, number of generated tokens) for each conversation, left-padded into one batch."""
    import torch

    encoded = [prompt_ids(fmt, m, tok) for m in conversations]
    width = max(len(x) for x in encoded)
    pad = tok.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in encoded])
    attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in encoded])
    eos = eos_ids(tok, model)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=settings.max_new_tokens,
                             repetition_penalty=settings.repetition_penalty, eos_token_id=eos, pad_token_id=pad,
                             **({"do_sample": True, "temperature": settings.temperature, "top_k": 0}
                                if settings.temperature > 0 else {"do_sample": False}))
    results = []
    for row in out[:, width:].tolist():
        n = next((i for i, t in enumerate(row) if t in eos or t == tok.pad_token_id), len(row))
        results.append((tok.decode(row[:n], skip_special_tokens=True).strip(), n))
    return results


def answer_with_hf(spec: ModelSpec, questions: list[Question], store: JsonlStore, settings: GenerationSettings,
                   ledger=None, progress=None, phase: str = "evaluation") -> int:
    """Answer every question `store` lacks for this model; returns how many were added."""
    todo = [q for q in questions if not store.done((spec.name, q.question_id))]
    if not todo:
        return 0
    tok, model = load_for_inference(spec.path)
    fingerprint = model_fingerprint(spec.path)
    meter = ledger.meter(phase, purpose=f"answers:{spec.name}", accelerator="cpu") if ledger else None
    if meter:
        meter.__enter__()
    try:
        for start in range(0, len(todo), settings.batch_size):
            batch = todo[start:start + settings.batch_size]
            t0 = time.time()
            answers: dict[str, list[str]] = {q.question_id: [] for q in batch}
            ntok: dict[str, list[int]] = {q.question_id: [] for q in batch}
            for turn in range(max(len(q.turns) for q in batch)):
                live = [q for q in batch if turn < len(q.turns)]
                convs = [turns_to_messages(q.turns, answers[q.question_id]) for q in live]
                for q, (text, n) in zip(live, generate_batch(tok, model, convs, settings, spec.prompt_format)):
                    answers[q.question_id].append(text)
                    ntok[q.question_id].append(n)
            seconds = (time.time() - t0) / len(batch)
            for q in batch:
                store.append({"model": spec.name, "question_id": q.question_id, "turns": answers[q.question_id],
                              "tokens": ntok[q.question_id], "kind": "hf", "prompt_format": spec.prompt_format,
                              "checkpoint": spec.path, "fingerprint": fingerprint,
                              "max_new_tokens": settings.max_new_tokens, "seconds": round(seconds, 2)})
            if progress:
                progress.update(len(batch))
    finally:
        if meter:
            meter.__exit__(None, None, None)
    return len(todo)


def answer_with_endpoint(spec: ModelSpec, questions: list[Question], store: JsonlStore,
                         settings: GenerationSettings, ledger=None, progress=None, guard=None,
                         phase: str = "evaluation") -> int:
    todo = [q for q in questions if not store.done((spec.name, q.question_id))]
    if not todo:
        return 0
    ep = spec.endpoint()
    client = make_client(ep)
    refuse_unpriced(ep.billed_as, guard.prices if guard is not None else None)
    for q in todo:
        messages, answers, ntok, served = [], [], [], ""
        for turn in q.turns:
            messages.append({"role": "user", "content": turn})
            # Reserved one call at a time: a later turn's prompt holds the answers before it.
            with hold(guard, ep.billed_as, [messages], settings.max_new_tokens):
                text, resp = chat(client, ep, messages, ledger=ledger, phase=phase,
                                  purpose=f"answers:{spec.name}", max_tokens=settings.max_new_tokens, temperature=0)
            messages.append({"role": "assistant", "content": text})
            answers.append(text.strip())
            ntok.append(getattr(resp.usage, "completion_tokens", None) if resp.usage else None)
            served = getattr(resp, "model", "") or served
        store.append({"model": spec.name, "question_id": q.question_id, "turns": answers, "tokens": ntok,
                      "kind": "endpoint", "served_model": served, "base_url": ep.base_url,
                      "max_new_tokens": settings.max_new_tokens})
        if progress:
            progress.update(1)
    return len(todo)


def add_premade(spec: ModelSpec, qset: QuestionSet, store: JsonlStore) -> int:
    answers = qset.premade.get(spec.model)
    if answers is None:
        have = ", ".join(qset.premade) or "none"
        raise UserError(f"model {spec.name!r} is premade:{spec.model} but question set {qset.name!r} "
                        f"has no answers by that name (it has: {have}): fix the models parameter")
    missing = [q.question_id for q in qset.questions if q.question_id not in answers]
    if missing:
        raise UserError(f"premade answers {spec.model!r} miss {len(missing)} question(s) (e.g. {missing[0]}): "
                        "use the matching predictions file")
    added = 0
    for q in qset.questions:
        if not store.done((spec.name, q.question_id)):
            store.append({"model": spec.name, "question_id": q.question_id, "turns": answers[q.question_id],
                          "kind": "premade", "source": spec.model})
            added += 1
    return added


def generate_answers(specs: list[ModelSpec], qset: QuestionSet, path: str | Path, settings: GenerationSettings,
                     ledger=None, guard=None, phase: str = "evaluation", progress: bool = True) -> JsonlStore:
    """Fill `path` (answers.jsonl) with every model's answer to every question; resumable.
    `guard` (a BudgetGuard of `phase`) caps what billed endpoints may spend; the answers are charged to
    `phase` (08_prefer's comparison: "preference"). `progress`: a bar per model (a saved notebook keeps
    it half-way for good: 08_prefer's comparison shows none)."""
    store = JsonlStore(path, ANSWER_KEY)
    for spec in specs:
        with tqdm(total=len(qset.questions), desc=f"answers {spec.name}", leave=False, disable=not progress) as bar:
            bar.update(sum(store.done((spec.name, q.question_id)) for q in qset.questions))
            if spec.kind == "hf":
                answer_with_hf(spec, qset.questions, store, settings, ledger, bar, phase=phase)
            elif spec.kind == "endpoint":
                answer_with_endpoint(spec, qset.questions, store, settings, ledger, bar, guard, phase=phase)
            else:
                add_premade(spec, qset, store)
    return store


def answer_table(store: JsonlStore) -> dict[str, dict[str, list[str]]]:
    """answers[model][question_id] = [answer per turn]."""
    out: dict[str, dict[str, list[str]]] = {}
    for rec in store.records():
        out.setdefault(rec["model"], {})[rec["question_id"]] = rec["turns"]
    return out
