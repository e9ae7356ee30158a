"""One call that does generation inside a run directory: what the CLI runs.

Notebook 01 runs the same steps in its own cells (RunContext, endpoint, Generator.run) so
that it can show them; it does not call this."""
from __future__ import annotations

from lib.generate.config import GenerateConfig
from lib.generate.engine import Generator
from lib.generate.seeds import load_seed_tasks
from lib.run import RunContext


def generate(run_dir, cfg: GenerateConfig, *, budgets_path=None, base_url: str = "", model: str = "embedded",
             api_key_env: str = "OPENAI_API_KEY", price_model: str = "", seed_path: str = "",
             show_progress: bool = True) -> dict:
    """Generate into `run_dir` (resuming what is there); returns the summary dict.

    An empty `base_url` starts the embedded local model server for the duration of the
    call; sampling settings then travel as its generation config (see GenerateConfig).
    """
    seeds = load_seed_tasks(seed_path, language=cfg.language)
    ctx = RunContext(run_dir, phase="data", writer="generate", budgets_path=budgets_path)
    if not base_url:
        cfg.server_generation_config = True
    with ctx.endpoint(base_url, model, api_key_env, price_model) as ep:
        gen = Generator(ctx.run_dir, ep, seeds, cfg, ledger=ctx.ledger, budgets=ctx.budgets,
                        show_progress=show_progress)
        summary = gen.run()
    summary["run_dir"] = str(ctx.run_dir)
    return summary
