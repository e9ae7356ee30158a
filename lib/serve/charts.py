"""The picture of 06_serve: answer length in tokens, base vs tuned, for the same prompts.

Takes the side-by-side rows (`lib.serve.chat.side_by_side`) and the tokenizer that counts them;
returns a Figure that lib/core/figures.py saves and shows. Drawn on a bare
`matplotlib.figure.Figure` (no pyplot): nothing here touches the kernel's backend.
"""
from __future__ import annotations

from matplotlib.figure import Figure  # noqa: TID253 -- drawing is this module's whole job


def answer_lengths(rows: list[dict], tok, names=("base", "tuned")) -> dict[str, list[int]]:
    """Tokens in each model's answer to each prompt, counted with one tokenizer for both."""
    return {name: [len(tok(r[name], add_special_tokens=False)["input_ids"]) for r in rows] for name in names}


def answer_length_figure(rows: list[dict], tok, max_new_tokens: int) -> Figure:
    """Horizontal bars per prompt, base above tuned, with the generation cap dotted: an answer that
    reaches the cap was cut, not finished."""
    n_tokens = answer_lengths(rows, tok)
    fig = Figure(figsize=(7, 0.6 + 0.5 * len(rows)))
    ax = fig.subplots()
    y = range(len(rows))
    ax.barh([i + 0.2 for i in y], n_tokens["base"], height=0.4, label="base", color="#999")
    ax.barh([i - 0.2 for i in y], n_tokens["tuned"], height=0.4, label="tuned", color="#2a7")
    ax.axvline(max_new_tokens, ls=":", color="k", lw=1)
    ax.set_yticks(list(y), [r["prompt"][:40] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"answer length in tokens (dotted: the {max_new_tokens}-token cap)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the bars, never over them
    ax.set_title("Answer length, base vs tuned")
    return fig
