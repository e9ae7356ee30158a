"""One phase: a notebook executed by papermill into the run directory, its logs beside it.

The executed notebook is written aside and renamed into place, also when a cell fails: the
failing cell shows its error, and the run stops with one line naming it (PhaseFailed).
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import zmq
from traitlets.config import Config

from lib.core.paths import REPO


def kernel_config() -> Config:
    """The kernel is given CurveZMQ keys by its manager (jupyter_client's own setting; ipykernel's
    python3 kernelspec declares "curve"): its sockets are encrypted, and ipykernel no longer prints
    "Kernel is running over TCP without encryption" into every phase of `make demo`. "auto" keeps
    plain TCP for a kernelspec without that declaration; a pyzmq built without CurveZMQ (where
    jupyter_client refuses "auto") keeps jupyter_client's default."""
    return Config({"KernelManager": {"transport_encryption": "auto" if zmq.has("curve") else "disabled"}})


class PhaseFailed(Exception):
    pass


def execute(name: str, src: Path, out: Path, params: dict, *, log_dir: Path) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    # papermill and the kernel talk on the `papermill` logger; the per-phase logs hold the rest
    logging.getLogger("papermill").setLevel(logging.ERROR)

    tmp = out.with_name(f".partial.{out.name}")
    with open(log_dir / f"{name}.stdout.log", "w") as stdout, open(log_dir / f"{name}.stderr.log", "w") as stderr:
        try:
            papermill.execute_notebook(
                str(src), str(tmp), parameters=params, cwd=str(REPO), kernel_name="python3",
                progress_bar=sys.stderr.isatty(), stdout_file=stdout, stderr_file=stderr,
                # papermill's default 60 s is too short on a busy node: in `make test` (2026-12-07) the
                # resumed node 0 of train_7b's 2-node rehearsal failed with "Kernel didn't respond in 60
                # seconds" while node 1 waited for it in torchrun's rendezvous until the test's limit
                start_timeout=300, config=kernel_config(),
            )
        except PapermillExecutionError as e:
            os.replace(tmp, out)  # keep what ran: the failing cell shows its error
            last = (e.evalue or e.ename).strip().splitlines()
            raise PhaseFailed(f"{name} failed in cell {e.exec_count}: {e.ename}: {last[-1] if last else ''}") from None
    os.replace(tmp, out)
