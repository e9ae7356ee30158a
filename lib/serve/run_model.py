"""A run's fine-tuned model and the prompt format it was trained on.

The format is read from the run's training metadata, never guessed: `train/metrics.json`
(written by lib.train.sft: `format`, `recipe`, `model` = the base it was tuned from), or, when
the metrics are gone, the recipe named in the model's `.complete` note. A model trained in
the Alpaca format answers badly to a chat template and vice versa, so a run without either
is refused with one line.

LoRA runs are published by training as a merged standalone checkpoint (the adapter is kept
beside it in `model/adapter/`). A directory that holds only an adapter is merged here with
training's own `lib.train.merge.merge_lora`, once, into `model-merged/`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lib.core.errors import UserError
from lib.core.model import check_checkpoint, load_for_inference, resolve_model
from lib.core.paths import REPO
from lib.train.merge import merge_lora
from lib.train.recipes import load_recipe
from lib.train.tiny import tiny_model


@dataclass(frozen=True)
class RunModel:
    run_dir: Path
    model_dir: Path  # a standalone Hugging Face checkpoint (weights merged)
    format: str  # training's prompt format: alpaca | vicuna_v1.1 | chat
    recipe: str
    base: str  # the model it was tuned from ("tiny:<family>" for test models)

    @property
    def name(self) -> str:
        return self.run_dir.name


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is unreadable ({type(e).__name__}): re-run training (03_train) to rewrite it") from None


def training_metadata(run_dir: Path) -> dict:
    """{format, recipe, model} from train/metrics.json, else from the model's .complete note + recipe."""
    metrics = run_dir / "train" / "metrics.json"
    if metrics.is_file():
        meta = _read_json(metrics)
        if not isinstance(meta, dict):
            raise UserError(f"{metrics} holds no training record (a {type(meta).__name__}): re-run training (03_train) "
                            "to rewrite it")
        if meta.get("format") and meta.get("recipe"):
            return {"format": meta["format"], "recipe": meta["recipe"], "model": meta.get("model", "")}
    note = run_dir / "model" / ".complete"
    if note.is_file():
        try:
            info = json.loads(note.read_text(encoding="utf-8").strip() or "{}")
        except ValueError:
            info = {}
        if isinstance(info, dict) and info.get("recipe"):
            return {"format": load_recipe(info["recipe"]).format, "recipe": info["recipe"],
                    "model": info.get("base", "")}
    raise UserError(f"{run_dir} has no training metadata (train/metrics.json): train the model first (03_train); "
                    "the prompt format is read from it, never guessed")


def _merge_adapter(adapter_dir: Path, meta: dict) -> Path:
    from transformers import AutoTokenizer

    from lib.train.sft import TrainConfig  # noqa: PLC0415 -- sft pulls torch; only an adapter-only run needs it

    out = adapter_dir.with_name(adapter_dir.name + "-merged")
    if (out / "config.json").is_file():
        return out
    tok = AutoTokenizer.from_pretrained(adapter_dir)
    return merge_lora(adapter_dir, load_recipe(meta["recipe"]), meta["model"], tok, seed=TrainConfig().seed)


def load_run_model(run: str | os.PathLike) -> RunModel:
    run_dir = Path(run)
    if not run_dir.is_absolute() and not run_dir.exists():
        run_dir = REPO / run_dir
    if not run_dir.is_dir():
        raise UserError(f"no run directory at {run}: pass runs/<id> of a run that has been trained")
    meta = training_metadata(run_dir)
    model_dir = run_dir / "model"
    if not (model_dir / ".complete").exists():
        raise UserError(f"{model_dir} is missing or was not finished: train the model first (03_train), "
                        "or re-run training to resume it")
    if not (model_dir / "config.json").is_file():
        if not (model_dir / "adapter_config.json").is_file():
            raise UserError(f"{model_dir} holds neither a checkpoint (config.json) nor LoRA adapters: re-run training")
        model_dir = _merge_adapter(model_dir, meta)
    check_checkpoint(model_dir)  # a garbage config or cut weights: one line now, not a traceback minutes later
    return RunModel(run_dir=run_dir.resolve(), model_dir=model_dir.resolve(), format=meta["format"],
                    recipe=meta["recipe"], base=meta["model"])


def load_base(rm: RunModel):
    """(tokenizer, model) of the base the run was tuned from, for side-by-side answers.
    Test runs ("tiny:<family>") rebuild the seeded random model training started from."""
    import torch
    from transformers import AutoTokenizer

    if rm.base.startswith("tiny:"):
        from lib.train.sft import TrainConfig  # noqa: PLC0415 -- pulls torch (as does this branch)

        tok = AutoTokenizer.from_pretrained(rm.model_dir)
        with torch.random.fork_rng():
            model = tiny_model(rm.base.split(":", 1)[1], tok, seed=TrainConfig().seed).eval()
        return tok, model
    return load_for_inference(resolve_model(rm.base or "embedded"))
