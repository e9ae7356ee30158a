"""Serve a run's model on 127.0.0.1 as an OpenAI-compatible endpoint.

    python -m lib.serve runs/<id>                         # transformers serve, trained format as chat template
    python -m lib.serve runs/<id> --backend llama.cpp     # llama.cpp on the run's GGUF (exported if missing)
    python -m lib.serve runs/<id> --port 8000

Then any OpenAI client (lib.core.client, the judging code, a chat UI) talks to the printed base
URL with the printed model name. Ctrl-C stops the server; it also dies with this process.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lib.core.errors import cli
from lib.core.server import BACKENDS
from lib.serve.local import open_server


@cli
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lib.serve", description=__doc__.split("\n")[0])
    p.add_argument("run", help="run directory, e.g. runs/<id>")
    p.add_argument("--backend", choices=BACKENDS, default="transformers")
    p.add_argument("--port", type=int, default=None, help="default: a free port")
    p.add_argument("--quant", default="Q4_K_M", help="GGUF for --backend llama.cpp: Q4_K_M or F16")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    srv = open_server(a.run, backend=a.backend, port=a.port, quant=a.quant, threads=a.threads)
    try:
        print(f"serving {Path(a.run).name} ({a.backend}) at {srv.base_url}  model={srv.model}", flush=True)
        print("  python: openai.OpenAI(base_url=..., api_key='local').chat.completions.create(model=..., messages=[...])",
              flush=True)
        srv.proc.wait()
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
