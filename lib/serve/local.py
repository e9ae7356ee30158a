"""A run's model behind a local OpenAI-compatible server: the one way `python -m lib.serve`
and notebook 06 open it (transformers serve on the checkpoint with the trained format as chat
template, or llama.cpp on the run's GGUF, exported first when missing)."""
from __future__ import annotations

import os

from lib.core.server import LocalServer, check_port
from lib.serve.export import export_run
from lib.serve.run_model import load_run_model
from lib.serve.template import serving_checkpoint


def open_server(run: str | os.PathLike, *, backend: str = "transformers", port: int | None = None,
                quant: str = "Q4_K_M", threads: int | None = None) -> LocalServer:
    """A started LocalServer for the run's model (the caller stops it, or uses `with`)."""
    if port is not None:
        check_port(port)  # a busy or impossible port is refused before the model is touched
    rm = load_run_model(run)
    log = rm.run_dir / "logs" / f"serve-{os.getpid()}.log"
    if backend == "llama.cpp":
        gguf = export_run(rm, quants=(quant,)).gguf(quant)
        return LocalServer(gguf, port=port, backend="llama.cpp", threads=threads, log_path=log).start()
    ckpt = serving_checkpoint(rm)
    return LocalServer(ckpt, port=port, backend=backend, threads=threads, log_path=log).start()
