"""Recipes as data: one YAML per recipe in lib/recipes/, loaded into typed dataclasses.

    recipe = load_recipe("alpaca_7b")          # or a path to a .yaml file
    recipe.effective_batch                     # per_device_batch x grad_accum x gpus x nodes

A full-size recipe states the seed's hyperparameters and the hardware it needs (GPUs per
node, nodes, per-device batch, accumulation) with the expected hours and dollars. Every
recipe also runs in a tiny form on CPU (`model="tiny"`): a random model of the same
architecture family (lib/train/tiny.py), few steps.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lib.core.errors import UserError
from lib.core.params import typed_value
from lib.core.paths import REPO
from lib.core.formats import FORMATS

RECIPES_DIR = REPO / "lib" / "recipes"


@dataclass
class Hardware:
    accelerator: str = "A100-80GB"  # SkyPilot accelerator name; "cpu" for laptop recipes
    gpus_per_node: int = 8
    nodes: int = 1
    per_device_batch: int = 4
    grad_accum: int = 4
    # With packing, memory follows real tokens, so a packed micro-batch can hold more examples
    # than a padded one (whose worst case is per_device_batch x max_length). These two give the
    # padded layout (packing off, or an architecture that cannot pack); 0 = same as above.
    padded_per_device_batch: int = 0
    padded_grad_accum: int = 0
    spot: bool = True
    expected_hours: float = 0.0
    expected_usd: float = 0.0
    price_basis: str = ""  # what the dollar figure assumes (seed report, spot/on-demand)

    @property
    def processes(self) -> int:
        return max(self.gpus_per_node, 1) * max(self.nodes, 1)

    def micro_batch(self, packing: bool) -> tuple[int, int]:
        """(per-device batch, gradient accumulation) for the packed or the padded layout."""
        if packing or not self.padded_per_device_batch:
            return self.per_device_batch, self.grad_accum
        return self.padded_per_device_batch, self.padded_grad_accum or self.grad_accum


@dataclass
class Lora:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    # Modules trained in full beside the adapters: Chinese-LLaMA's stage 2 keeps the (extended)
    # embeddings and LM head trainable, since new token rows must learn from scratch.
    modules_to_save: list[str] = field(default_factory=list)
    quantize: str | None = None  # "4bit" = QLoRA (CUDA + bitsandbytes only)


# Pairs held out for DPO's preference accuracy and reward margin (lib/train/dpo.py, 08_prefer): the share
# the launch plan leaves out of DPO's trained tokens too.
DPO_HELDOUT_FRACTION = 0.25


@dataclass
class Dpo:
    """Preference tuning after SFT (lib/train/dpo.py, TRL's DPOTrainer): the recipe's base is the
    SFT model, which is also the frozen reference."""
    beta: float = 0.1  # strength of the pull toward the reference (DPO's KL coefficient)
    loss_type: str = "sigmoid"  # TRL's name for the DPO paper's loss
    # Reference log-probs computed once before training and stored with the data: one reference
    # forward per pair instead of one per epoch, and no reference model in memory while training.
    precompute_ref_log_probs: bool = True


@dataclass
class Recipe:
    name: str
    description: str
    base_model: str  # hub id or path of the seed's base; "embedded" / "tiny" for local recipes
    family: str  # architecture family: the tiny CPU form builds a random model of it
    format: str = "alpaca"  # alpaca | vicuna_v1.1 | chat (the model's own template) | text (raw documents)
    language: str = "en"
    max_length: int = 512
    packing: bool = True
    effective_batch: int = 128
    num_train_epochs: float = 3.0
    learning_rate: float = 2e-5
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.03
    warmup_steps: int = 0
    weight_decay: float = 0.0
    bf16: bool = True
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"
    fsdp: bool = True
    hardware: Hardware = field(default_factory=Hardware)
    lora: Lora | None = None
    dpo: Dpo | None = None  # a preference-tuning recipe (lib/train/dpo.py); None = supervised
    # "all", or "new_embeddings": Chinese-LLaMA's stage 1, where only the rows a vocabulary
    # extension appended (ids >= new_embeddings_from) learn and everything else stays frozen.
    trainable: str = "all"
    new_embeddings_from: int = 0  # first appended token id (the base vocabulary's size)
    source: str = ""  # where the numbers come from

    @property
    def per_step_batch(self) -> int:
        h = self.hardware
        return h.per_device_batch * h.grad_accum * h.processes

    @property
    def is_full_size(self) -> bool:
        return self.hardware.accelerator.lower() != "cpu"


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping, got {type(data).__name__}: fix the YAML")
    names = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            hint = difflib.get_close_matches(k, names, n=1)
            raise UserError(f"{where}: unknown key {k!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                            + ": remove or rename it")
    kw = {k: _typed(f"{where}.{k}", names[k].type, v) for k, v in data.items()}
    if cls is Recipe:
        if "hardware" in kw:
            kw["hardware"] = _build(Hardware, kw["hardware"], f"{where}.hardware")
        if kw.get("lora") is not None:
            kw["lora"] = _build(Lora, kw["lora"], f"{where}.lora")
        if kw.get("dpo") is not None:
            kw["dpo"] = _build(Dpo, kw["dpo"], f"{where}.dpo")
    try:
        return cls(**kw)
    except TypeError as e:
        raise UserError(f"{where}: {e}: add the missing keys") from None


def _typed(where: str, annotation: str, value):
    """A recipe value checked against its field's declared type (`learning_rate: null` or
    `gpus_per_node: eight` would otherwise fail deep inside the batch arithmetic)."""
    if annotation == "list[str]":
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise UserError(f"{where}={value!r} is not a list of names: give e.g. [q_proj, v_proj]")
        return value
    if annotation == "str | None":
        return None if value is None else typed_value(where, "str", value, "the recipe")
    return typed_value(where, annotation, value, "the recipe")  # Hardware / Lora: checked by _build


TRAIN_FORMATS = (*FORMATS, "text")  # text: continued pretraining on raw documents (lib/train/text.py)


def _validate(r: Recipe, where: str) -> Recipe:
    if r.format not in TRAIN_FORMATS:
        raise UserError(f"{where}: format {r.format!r} is unknown: use one of {', '.join(TRAIN_FORMATS)}")
    if r.trainable not in ("all", "new_embeddings"):
        raise UserError(f"{where}: trainable {r.trainable!r} is unknown: use 'all' or 'new_embeddings'")
    if r.trainable == "new_embeddings" and (r.new_embeddings_from < 1 or r.lora is not None):
        raise UserError(f"{where}: trainable: new_embeddings needs new_embeddings_from (the base vocabulary size) "
                        "and no lora")
    for key in ("max_length", "effective_batch"):
        if int(getattr(r, key)) < 1:
            raise UserError(f"{where}: {key} must be a positive integer")
    if r.dpo is not None and not float(r.dpo.beta) > 0:
        raise UserError(f"{where}: dpo.beta={r.dpo.beta} must be positive: use e.g. 0.1")
    if not 0 < float(r.learning_rate) < 1:
        raise UserError(f"{where}: learning_rate={r.learning_rate} is out of range: use e.g. 2e-5")
    r.learning_rate = float(r.learning_rate)
    r.weight_decay = float(r.weight_decay)
    if r.is_full_size and r.per_step_batch != r.effective_batch:
        h = r.hardware
        raise UserError(
            f"{where}: per_device_batch {h.per_device_batch} x grad_accum {h.grad_accum} x gpus {h.gpus_per_node} "
            f"x nodes {h.nodes} = {r.per_step_batch}, not effective_batch {r.effective_batch}: fix hardware.grad_accum")
    if r.is_full_size and r.hardware.padded_per_device_batch:
        h = r.hardware
        b, a = h.micro_batch(packing=False)
        if b * a * h.processes != r.effective_batch:
            raise UserError(
                f"{where}: padded_per_device_batch {b} x padded_grad_accum {a} x gpus {h.gpus_per_node} x nodes "
                f"{h.nodes} = {b * a * h.processes}, not effective_batch {r.effective_batch}: fix hardware.padded_grad_accum")
    return r


def recipe_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise UserError(f"recipe file {p} does not exist: pass a recipe name ({', '.join(list_recipes())}) or a path")
        return p
    p = RECIPES_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        hint = difflib.get_close_matches(name_or_path, list_recipes(), n=1)
        raise UserError(f"unknown recipe {name_or_path!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                        + f": use one of {', '.join(list_recipes())}")
    return p


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str) -> Recipe:
    path = recipe_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: save the recipe as UTF-8 YAML") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML ({str(e).splitlines()[0]}): fix the file") from None
    return _validate(_build(Recipe, data, path.name), path.name)
