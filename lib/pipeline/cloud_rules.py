"""Laptop values that must never reach a paid node: the rules a cloud profile is checked against.

A cloud profile (`target: cloud`) is what a sky/*.yaml task runs. It names only what differs
from the recipe and the notebooks' defaults, so every default that is a laptop value is a
trap: a forgotten line would fall back to it silently, which is how "Alpaca-7B on A100x8"
once trained SmolLM2-135M for 6 steps. Each rule below says what is refused, why, and what
to write instead. A rule marked `must_name` guards a parameter whose notebook default is
itself refused, so the profile must name it; the others (defaults that mean "the recipe's")
are checked only when a profile or `--set` names them.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.core.errors import UserError
from lib.core.model import LAPTOP_MODELS
from lib.train.recipes import load_recipe

_DATED = re.compile(r"\d{4}-\d{2}-\d{2}|\d{4}$")  # gpt-4o-2024-08-06, claude-...-20241022, gpt-4-0613


@dataclass(frozen=True)
class Rule:
    refused: Callable[[Any], bool]
    why: str
    fix: str
    must_name: bool = True  # the notebook's default is refused: a cloud profile must write the line


def laptop_recipe(name) -> bool:
    """A recipe laid out for a CPU (embedded, tiny): its numbers are a demo's."""
    return not load_recipe(str(name)).is_full_size


# A judge on a paid run: hosted, pinned, on the whole question set (04_evaluate and 08_prefer's comparison).
JUDGE_RULES: dict[str, Rule] = {
    "judge_base_url": Rule(lambda v: not v, "empty: it serves the embedded 135M judge", "a hosted endpoint"),
    "judge_model": Rule(lambda v: v in LAPTOP_MODELS or not _DATED.search(str(v)), "not a dated snapshot",
                        "a pinned judge such as gpt-4o-2024-08-06"),
    "question_set": Rule(lambda v: str(v).startswith("own"), "the project's own small set", "e.g. vicuna:<url>"),
    "max_questions": Rule(lambda v: int(v) != 0, "a sample", "0 (every question of the set)"),
}

CLOUD_RULES: dict[str, dict[str, Rule]] = {
    "01_generate": {
        "teacher_base_url": Rule(lambda v: not v, "empty: it serves the embedded 135M model", "a hosted endpoint"),
        "teacher_model": Rule(lambda v: v in LAPTOP_MODELS, "the embedded 135M model", "the hosted teacher's id"),
        "num_instructions_to_generate": Rule(lambda v: int(v) < 1000, "a laptop-sized target", "e.g. 52000"),
    },
    "02_clean": {
        "recipe": Rule(laptop_recipe, "a laptop recipe", "the recipe the data will train, e.g. alpaca_7b"),
        "tokenizer": Rule(lambda v: v in LAPTOP_MODELS, "the embedded model's tokenizer",
                          "nothing (the recipe's) or the tokenizer of the model you will train", must_name=False),
        "max_tokens": Rule(lambda v: int(v) < 0, "no token budget", "0 (the recipe's max_length) or a budget",
                           must_name=False),
    },
    "03_train": {
        "recipe": Rule(laptop_recipe, "a laptop recipe", "a recipe in lib/recipes/, e.g. alpaca_7b"),
        "model": Rule(lambda v: v in LAPTOP_MODELS, "a laptop model",
                      "nothing (the recipe's base model) or --env BASE_MODEL=<path or hub id>", must_name=False),
        "max_steps": Rule(lambda v: int(v) != 0, "a demo step cap", "0 (the recipe's epochs)"),
        "nproc": Rule(lambda v: int(v) != 0, "a fixed process count", "0 (every GPU of every node)"),
    },
    "04_evaluate": {
        **JUDGE_RULES,
        "models": Rule(lambda v: any(str(m) in LAPTOP_MODELS for m in dict(v).values()), "the embedded model",
                       "the base model the run fine-tuned and {run_dir}/model"),
    },
    "08_prefer": {
        **JUDGE_RULES,
        "recipe": Rule(laptop_recipe, "a laptop recipe", "a recipe with a dpo section, e.g. dpo_7b"),
        "prompt_set": Rule(lambda v: not v or str(v).startswith("own"), "the comparison's few questions",
                           "the prompts to sample pairs for, e.g. alpaca:{run_dir}/data/clean.jsonl"),
        "max_new_tokens": Rule(lambda v: int(v) < 256, "a laptop answer cap", "e.g. 1024 (FastChat's)"),
        "base_model": Rule(lambda v: v in LAPTOP_MODELS, "the embedded model", "the base model the run fine-tuned"),
        "sft_model": Rule(lambda v: v in LAPTOP_MODELS, "a laptop model", "nothing ({run_dir}/model) or --env SFT_MODEL=...",
                          must_name=False),
        "max_steps": Rule(lambda v: int(v) != 0, "a demo step cap", "0 (the recipe's epochs)"),
        "nproc": Rule(lambda v: int(v) != 0, "a fixed process count", "0 (every GPU of every node)"),
    },
}


def check_cloud(profile: dict, plan: list[tuple[str, Path, dict]]) -> None:
    """Refuse a cloud profile (with its --set values) that would let a laptop default reach a
    paid node. Environment overrides the profile declares come later and are recorded."""
    if profile["target"] != "cloud":
        return
    for name, _, params in plan:
        for param, rule in CLOUD_RULES.get(name, {}).items():
            if param not in params:
                if rule.must_name:
                    raise UserError(f"cloud profile {profile['path']} does not name {name}.{param}: its notebook "
                                    f"default is a laptop value; write {param}: <{rule.fix}> in the profile")
                continue
            try:
                refused = rule.refused(params[param])
            except (TypeError, ValueError):
                raise UserError(f"cloud profile {profile['path']}: {name}.{param}={params[param]!r} has the wrong "
                                f"type: use {rule.fix}") from None
            if refused:
                raise UserError(f"cloud profile {profile['path']}: {name}.{param}={params[param]!r} is {rule.why}: "
                                f"use {rule.fix}")
