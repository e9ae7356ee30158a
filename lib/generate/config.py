"""Generation settings: one dataclass, one name and one default per setting.

Notebook 01's parameters cell, `python -m lib.generate` and the pipeline profiles all use
these names (a notebook parameter is the field name; a CLI flag is the same name with
dashes): lib/core/params.py maps the notebook's parameters onto the dataclass and refuses
unknown ones (`settings_from_params`), and derives the command line from the fields, as it
does for training's TrainConfig.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from lib.core.params import add_settings_arguments, settings_from_args

# Notebook 01's parameters that are not generation settings: where to run and whom to ask.
RUN_PARAMS = ("run_dir", "budgets_path", "teacher_base_url", "teacher_model", "api_key_env", "price_model", "seed_path")
# Set by the code, not by people: the CLI does not offer them.
DERIVED = ("server_generation_config", "source")


@dataclass
class GenerateConfig:
    num_instructions_to_generate: int = 100  # stop once this many records are kept (Alpaca: 52,000)
    tasks_per_request: int = 20  # how many new tasks the prompt asks for (Alpaca: 20)
    num_examples: int = 3  # seed tasks shown in each prompt (Alpaca: 3)
    concurrency: int = 8  # requests in flight at once
    max_tokens: int = 3072  # completion limit per request (also the worst case reserved)
    temperature: float = 1.0
    top_p: float = 1.0
    language: str = "en"  # language the tasks are asked for: "en" or "zh"
    run_seed: int = 0  # seeds the per-request sampling of examples
    similarity_threshold: float = 0.7  # ROUGE-L F above which an instruction is a near-duplicate
    max_requests: int = 0  # 0 = no limit besides the target and the budget
    max_retries: int = 6  # per request, on 429 / 5xx / timeouts / connection errors
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    request_timeout_s: float = 600.0
    use_batch_api: bool = False  # OpenAI Batch API: half price, results within 24 h
    batch_poll_s: float = 30.0  # how often to poll a batch (a batch takes minutes to hours)
    batch_max_requests: int = 1000  # requests per batch job
    source: str = "self-instruct"
    # `transformers serve` ignores `temperature` unless the model's generation config
    # samples; for the embedded server we send its own generation config with sampling on.
    server_generation_config: bool = False
    repetition_penalty: float = 1.0  # only sent through server_generation_config
    topic_hints: bool = False  # name a random everyday topic in each prompt (steers tiny teachers)
    # Self-Instruct's second step for listed tasks that came without an output: if the
    # instruction passes the filters and the novelty rule, ask the teacher for its answer in
    # a follow-up request. Alpaca drops them; tiny teachers often list tasks without answers.
    answer_missing_outputs: bool = False  # online mode only (a Batch API round has no follow-ups)
    answer_max_tokens: int = 160
    time_limit_s: float = 0.0  # stop sending new requests after this many seconds (0 = no limit)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One --flag per setting but the derived ones (lib/core/params.py: dashes, typed by the field)."""
    add_settings_arguments(parser, GenerateConfig, skip=DERIVED)


def from_arguments(args: argparse.Namespace) -> GenerateConfig:
    return settings_from_args(GenerateConfig, args)
