"""Self-instruct generation (notebook 01): prompts, parsing, filters, novelty, engine, charts.

    from lib.generate import Generator, GenerateConfig, load_seed_tasks, NoveltyFilter
"""
from lib.generate.config import GenerateConfig
from lib.generate.engine import Generator
from lib.generate.novelty import NoveltyFilter
from lib.generate.seeds import SeedTask, load_seed_tasks

__all__ = ["GenerateConfig", "Generator", "NoveltyFilter", "SeedTask", "load_seed_tasks"]
