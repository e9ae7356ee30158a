"""Pictures, one way everywhere: lib draws a matplotlib Figure, `save` writes it as a PNG in
the run directory, and a notebook `show`s that PNG.

Why the notebook shows the saved file rather than the live figure: the picture in Jupyter,
in the executed notebook and in the run directory is then byte for byte the same, whatever
matplotlib backend the kernel has (a lib module that once called `matplotlib.use("Agg")`
made `plt.show()` show nothing in Jupyter while papermill's file looked fine).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from lib.core.files import atomic_write_via


def save(fig, path: str | os.PathLike, *, dpi: int = 110, tight: bool = False) -> Path:
    """Write `fig` as a PNG at `path` (whole or absent, lib/core/files.py) and close it.

    Closing matters in Jupyter: a pyplot figure still open when its cell ends is printed
    a second time by the inline backend."""
    path = Path(path)
    atomic_write_via(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi,
                                                   bbox_inches="tight" if tight else None))
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    return path


def show(*paths: str | os.PathLike) -> None:
    """Display saved PNGs in the notebook (Jupyter and the executed .ipynb alike)."""
    from IPython.display import Image, display

    for p in paths:
        display(Image(filename=str(p)))
