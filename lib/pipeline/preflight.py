"""Everything checked before a run writes a file, and the one teacher server a run shares.

Preflight: budgets.yaml loads, every endpoint a profile names is priced, keyed and reachable,
the embedded model is installed, and a base model 03_train will load is found (config and
tokenizer, no weights): a cloud run that cannot load what it names stops in seconds, naming it.
When the profile's teacher is the embedded model, one local server is started for the whole
run and shared by every phase that declares an endpoint (SHARED_ENDPOINT_PARAMS).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from lib.budget import load_budgets
from lib.budget.guard import refuse_unpriced
from lib.core.client import Endpoint, check_endpoint
from lib.core.errors import UserError
from lib.core.model import LAPTOP_MODELS, gguf_path
from lib.core.paths import REPO
from lib.core.server import embedded_server
from lib.train.recipes import load_recipe
from lib.train.model import check_base_model

# Parameters the runner fills in for any notebook that declares them.
SHARED_ENDPOINT_PARAMS = (("teacher_base_url", "teacher_model"), ("judge_base_url", "judge_model"))


def preflight(profile: dict, budgets_path: Path, plan: list[tuple[str, Path, dict]] = ()) -> None:
    """Everything that can be checked before a single file is written."""
    budgets = load_budgets(budgets_path)
    for _, _, params in plan:  # endpoints a profile names per notebook (cloud profiles)
        for base, model in SHARED_ENDPOINT_PARAMS:
            if params.get(base):
                _check(Endpoint(base_url=params[base], model=params.get(model) or "",
                                api_key_env=params.get("api_key_env") or "OPENAI_API_KEY"), budgets)
    for name, _, params in plan:
        if name == "03_train":
            _find_base_model(params)
    teacher = profile.get("teacher") or "embedded"
    if teacher == "none":
        return
    if teacher == "embedded":
        gguf_path()
        return
    if not isinstance(teacher, dict) or "base_url" not in teacher or "model" not in teacher:
        raise UserError(f"{profile['path']}: teacher must be `embedded` or {{base_url, model, api_key_env}}")
    _check(Endpoint(base_url=teacher["base_url"], model=teacher["model"],
                    api_key_env=teacher.get("api_key_env", "OPENAI_API_KEY"),
                    price_model=teacher.get("price_model") or None), budgets)


def _check(ep: Endpoint, budgets) -> None:
    """A priced model, a key in the environment, a server that answers."""
    refuse_unpriced(ep.billed_as, budgets.prices)  # billed_as: the one billing rule (lib/core/client.py)
    ep.api_key()
    check_endpoint(ep)


def _find_base_model(params: dict) -> None:
    """The base model 03_train will load (its `model`, or the recipe's base when empty) is found
    before anything is written or any worker starts; the laptop models need no check."""
    recipe, model = str(params.get("recipe") or "embedded"), str(params.get("model") or "")
    if model and not Path(model).is_absolute() and (REPO / model).exists():
        model = str(REPO / model)  # a repository-relative checkpoint, as the notebook resolves it
    if (model or load_recipe(recipe).base_model) not in LAPTOP_MODELS:
        check_base_model(recipe, model)


@contextlib.contextmanager
def shared_teacher(profile: dict, run_dir: Path, needed: bool = True):
    """Start one embedded server for the run (lib.core.server.embedded_server); yield the params every notebook gets.
    `needed`: some notebook to run takes an endpoint (a training-only run starts no server)."""
    teacher = profile.get("teacher") or "embedded"
    if teacher == "none" or not needed:
        yield {}
        return
    if teacher != "embedded":
        params = {}
        for base, model in SHARED_ENDPOINT_PARAMS:
            params[base], params[model] = teacher["base_url"], teacher["model"]
        params["api_key_env"] = teacher.get("api_key_env", "OPENAI_API_KEY")
        yield params
        return
    with embedded_server(log_path=run_dir / "logs" / "teacher-server.log") as srv:
        yield {k: v for base, model in SHARED_ENDPOINT_PARAMS for k, v in ((base, srv.base_url), (model, srv.model))}
