"""The two server processes `lib.core.server.LocalServer` starts, each with the one fix the
project needs from its library; everything else is the library's own command line.

    python -m lib.core.server_main transformers serve --host 127.0.0.1 --port 8000 <model dir>
    python -m lib.core.server_main llama.cpp --model <file.gguf> --host 127.0.0.1 --port 8000 ...

- `transformers serve` answers GET /v1/models from a scan of the Hugging Face hub cache. With
  no cache directory (a laptop or CI that never downloaded from the hub: every model here is a
  local directory) the scan raises CacheNotFound and the route answers HTTP 500; with one, it
  lists cached hub models and never the directory it serves. Here the list is the served model,
  under the name clients send (`LocalServer.model`), so `client.models.list()` names it.
- llama.cpp's server (llama-cpp-python) keeps the previous request's KV cache and evaluates only
  the part of a new prompt after their longest common prefix (a repeated prompt: its last token
  alone). Logits computed in a different batch split differ in the last bits, enough to flip a
  greedy choice between two near-equal tokens, so at temperature 0 the same request got another
  answer depending on what was asked before: a streamed request after the same non-streamed one
  differed, and so could a judge's verdict after another judgment. Here every prompt is
  evaluated whole, so an answer depends on its request only; the price is evaluating the shared
  prefix again (prompt tokens are evaluated in batches, far faster than generated ones).
"""
from __future__ import annotations

import runpy
import sys
import time


def list_served_model(model: str) -> None:
    """Make transformers serve's GET /v1/models list `model` (the name it is asked by) and nothing else."""
    from transformers.cli.serving.model_manager import ModelManager

    listed = [{"id": model, "object": "model", "owned_by": "local", "created": int(time.time())}]
    ModelManager.get_gen_models = staticmethod(lambda cache_dir=None: listed)


def evaluate_every_prompt_whole() -> None:
    """Make llama-cpp-python forget the previous request before each generation (see above)."""
    import llama_cpp

    generate = llama_cpp.Llama.generate

    def generate_from_scratch(self, tokens, *args, **kwargs):
        self.reset()  # no cached prefix: generate() evaluates the whole prompt in its own batches
        return generate(self, tokens, *args, **kwargs)

    llama_cpp.Llama.generate = generate_from_scratch


def main(argv: list[str]) -> None:
    if argv[:2] == ["transformers", "serve"] and len(argv) > 2:
        from transformers.cli.transformers import app

        list_served_model(argv[-1])  # serve's one positional argument, last on LocalServer's command line
        app(argv[1:], prog_name="transformers")
    elif argv[:1] == ["llama.cpp"]:
        evaluate_every_prompt_whole()
        sys.argv = ["python -m llama_cpp.server", *argv[1:]]
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
    else:
        sys.exit("usage: python -m lib.core.server_main {transformers serve ... MODEL | llama.cpp ...}")


if __name__ == "__main__":
    main(sys.argv[1:])
