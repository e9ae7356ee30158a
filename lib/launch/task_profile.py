"""What a sky task runs, read from the profile its run script names: never restated in its envs.

A task's `run` script calls the runner with a profile (`python -m lib.pipeline run --profile
alpaca_7b --phases 03_train ...`). The launcher reads that profile as the runner will, with
the task's envs as the environment overrides the profile declares (`--env BASE_MODEL=...`),
so the recipe -- and through it the base model, prompt format, max_length, epochs and
hardware -- has one home: lib/recipes/, named by the profile.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from lib.core.errors import UserError
from lib.core.profiles import apply_env_overrides, load_profile, notebook_params, select_phases

TRAINING_PHASES = ("03_train", "08_prefer")
RUN_LINE = re.compile(r"python -m lib\.pipeline run --profile (\S+)(?: --phases (\S+))?")


@dataclass
class TaskProfile:
    profile: str  # the profile's name (lib/profiles/<name>.yaml)
    phases: list[str]  # the notebooks the task runs, in order
    params: dict[str, dict] = field(default_factory=dict)  # notebook -> what the profile and the task's envs set

    @property
    def training_phase(self) -> str | None:
        """The notebook that trains on the task's GPUs: 03_train (SFT, pretraining) or 08_prefer (DPO)."""
        return next((nb for nb in TRAINING_PHASES if nb in self.phases), None)

    @property
    def trains(self) -> bool:
        return self.training_phase is not None

    @property
    def train_params(self) -> dict:
        return self.params.get(self.training_phase or "", {})

    def recipe(self) -> str:
        """The recipe the training notebook runs: a cloud profile always names it (lib/pipeline/cloud_rules.py)."""
        phase = self.training_phase or "03_train"
        recipe = self.params.get(phase, {}).get("recipe")
        if not recipe:
            raise UserError(f"profile {self.profile} runs {phase} without a recipe: write {phase}.recipe in "
                            f"lib/profiles/{self.profile}.yaml")
        return str(recipe)


def task_profile(run_script: str | None, envs: dict | None = None) -> TaskProfile | None:
    """The profile a task's run script names, resolved with the task's envs; None when the script
    runs no profile (sky/serve.yaml serves a model)."""
    m = RUN_LINE.search(run_script or "")
    if m is None:
        return None
    name = m.group(1).strip("\"'")
    profile = load_profile(name)
    plan = notebook_params(profile, {}, select_phases(profile, m.group(2)))
    apply_env_overrides(profile, plan, env={k: str(v) for k, v in (envs or {}).items() if v is not None})
    return TaskProfile(profile=name, phases=[nb for nb, _, _ in plan],
                       params={nb: {k: v for k, v in p.items() if k != "__overrides__"} for nb, _, p in plan})
