"""Data curation (phase 02): GPT4All- and Vicuna-style cleaning, counted and shown.

    from lib.clean import CleanConfig, clean_file, write_outputs, load_tokenizer
    result = clean_file(path, CleanConfig(format="sharegpt", max_tokens=2048), tokenizer=load_tokenizer("embedded"))
    write_outputs(result, run_dir)      # data/clean.jsonl, data/clean_dataset/, report/clean.md ...

    python -m lib.clean.pipeline runs/dev/data/generated.jsonl --run-dir runs/dev

Modules: formats (read/convert/write), refusals (phrase lists), filters (the switchable
filters and `CleanConfig`), sharegpt (HTML, roles, token-budget split), report (funnel
table and chart), pipeline (the stages in order).
"""
import importlib

# Names resolve on first use, so `python -m lib.clean.pipeline` does not import the module
# twice (once through this package, once as __main__).
_EXPORTS = {
    "CleanConfig": "filters",
    "Malformed": "formats", "alpaca_to_sharegpt": "formats", "read_records": "formats",
    "sharegpt_to_alpaca": "formats", "write_dataset": "formats",
    "CleanResult": "pipeline", "clean_file": "pipeline", "clean_records": "pipeline",
    "load_tokenizer": "pipeline", "write_outputs": "pipeline",
    "CleanReport": "report", "plot_funnel": "report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lib.clean' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lib.clean.{_EXPORTS[name]}"), name)
