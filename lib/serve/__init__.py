"""Use the model you paid for: chat with a run's model, serve it, ship it to a laptop.

    python -m lib.serve runs/<id>                     # OpenAI-compatible endpoint on 127.0.0.1
    python -m lib.serve runs/<id> --backend llama.cpp # the same, from the run's 4-bit GGUF
    python -m lib.serve.export runs/<id>                    # GGUF f16 + Q4_K_M + Ollama Modelfile

Modules: `run_model` (a run's checkpoint and the prompt format it was trained on, read from
its training metadata), `template` (that format as a Jinja chat template, for servers and
GGUF files), `chat` (streamed multi-turn chat in Jupyter, base and tuned side by side).
"""
