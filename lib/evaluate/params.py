"""The checks 04_evaluate runs on its parameters before it writes anything."""
from __future__ import annotations

from lib.core.errors import UserError

MODES = ("pairwise", "single", "both")


def check_params(*, mode: str, models: dict, candidate: str, max_questions: int, max_new_tokens: int,
                 judge_max_tokens: int, parse_retries: int) -> None:
    if mode not in MODES:
        raise UserError(f"mode {mode!r} is unknown: use one of {', '.join(MODES)}")
    if not isinstance(models, dict) or not models:
        raise UserError("models is empty: pass e.g. {'base': 'embedded', 'tuned': '{run_dir}/model'}")
    if mode in ("pairwise", "both"):
        if candidate not in models:
            raise UserError(f"candidate {candidate!r} is not one of models {sorted(models)}: name the model whose win rate you want")
        if len(models) < 2:
            raise UserError("pairwise judging needs at least two models: add an opponent to models or use mode='single'")
    for name, value, low in (("max_questions", max_questions, 0), ("max_new_tokens", max_new_tokens, 1),
                             ("judge_max_tokens", judge_max_tokens, 1), ("parse_retries", parse_retries, 0)):
        if not isinstance(value, int) or value < low:
            raise UserError(f"{name} must be an integer >= {low}, not {value!r}")
