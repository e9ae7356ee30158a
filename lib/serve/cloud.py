"""One cloud serving replica (sky/serve.yaml): the run's model behind vLLM, hours in the ledger.

    python -m lib.serve.cloud --run-dir $RUN_DIR --port 8000          # on a SkyServe replica

The model comes from the bucket (`$RUN_DIR/model`, written by training); its prompt format
from the run's training metadata, given to vLLM as the chat template (the same generated
Jinja as `python -m lib.serve`). The replica's time is metered into the run's ledger in
phase `serving` (one compute interval per replica, re-written every heartbeat, so a
preempted replica loses at most one heartbeat), priced at this node's catalog price by the
one GPU price rule (lib.budget.gpu_hourly_usd). A replica refuses to start, and stops, once
the serving phase has reached its cap in budgets.yaml.

`--backend transformers` runs the same replica on a CPU with `transformers serve` for the
local rehearsal (tests/test_sky_serve.py); it is refused on a GPU node, so a laptop setting
never reaches a paid replica.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lib.budget import BudgetGuard, Ledger, gpu_hourly_usd, load_budgets
from lib.core.errors import UserError, cli
from lib.core.server import LocalServer
from lib.serve.run_model import load_run_model
from lib.serve.template import serving_checkpoint

# SkyPilot catalog names of the GPUs the task allows, matched against the device name.
_GPU_NAMES = (("H100", "H100"), ("A100-SXM4-80GB", "A100-80GB"), ("A100 80GB", "A100-80GB"), ("A100", "A100"),
              ("A10G", "A10G"), ("L40S", "L40S"), ("L4", "L4"))


def local_gpus() -> tuple[str, int]:
    """(catalog accelerator name, count) of this node; ("cpu", 0) without CUDA."""
    try:
        import torch
    except ImportError:
        return "cpu", 0
    if not torch.cuda.is_available():
        return "cpu", 0
    name = torch.cuda.get_device_name(0)
    for needle, catalog in _GPU_NAMES:
        if needle in name:
            return catalog, torch.cuda.device_count()
    raise UserError(f"cannot price GPU {name!r}: add it to lib/serve/cloud.py _GPU_NAMES with its SkyPilot name")


def node_price(budgets, accelerator: str, count: int, spot: bool) -> tuple[float, str]:
    if accelerator == "cpu":
        return 0.0, "local CPU costs $0"
    return gpu_hourly_usd(budgets.reference, f"{accelerator}:{count}", spot=spot)  # SkyPilot's cloud/region


def vllm_command(checkpoint: Path, *, port: int, name: str, vllm: str = "vllm") -> list[str]:
    return [vllm, "serve", str(checkpoint), "--host", "0.0.0.0", "--port", str(port), "--served-model-name", name,
            "--chat-template", str(checkpoint / "chat_template.jinja"), "--dtype", "auto"]


def serve_replica(run_dir: str | os.PathLike, *, port: int, backend: str = "vllm", spot: bool = True,
                  heartbeat_s: float = 300.0, max_seconds: float = 0.0, budgets_path: str | None = None,
                  vllm: str = "vllm") -> int:

    accelerator, count = local_gpus()
    if backend != "vllm" and accelerator != "cpu":
        raise UserError(f"--backend {backend} is the CPU rehearsal: a GPU replica serves with vLLM")
    rm = load_run_model(run_dir)
    budgets = load_budgets(budgets_path or None)
    replica = os.environ.get("SKYPILOT_SERVE_REPLICA_ID") or os.environ.get("SKYPILOT_TASK_ID", "local")
    ledger = Ledger(rm.run_dir / "ledger", writer=f"serve-{replica}".replace("/", "_"), budgets=budgets)
    guard = BudgetGuard(budgets, ledger, phase="serving")
    cap = guard.cap
    if ledger.spent("serving") >= cap:
        raise UserError(f"the serving phase has spent ${ledger.spent('serving'):,.2f} of its ${cap:,.2f} cap: "
                        "raise phases.serving.cap in budgets.yaml to serve longer")
    hourly, source = node_price(budgets, accelerator, count, spot and accelerator != "cpu")
    # The template view goes to local disk: nothing about it needs to reach the bucket.
    ckpt = serving_checkpoint(rm, out=Path(os.environ.get("TMPDIR", "/tmp")) / f"shear-serve-{rm.name}" / "checkpoint")
    print(f"serving {rm.name} ({rm.format} format) on {backend}, port {port}; {accelerator}:{count} at "
          f"${hourly:.3f}/h ({source}); serving cap ${cap:,.2f}", flush=True)

    stop = {"why": ""}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(why="SIGTERM"))  # SkyServe scaling down: close the interval
    with ledger.meter("serving", heartbeat_s=heartbeat_s, accelerator=accelerator, count=max(count, 1),
                      hourly_usd=hourly, cloud="skypilot" if os.environ.get("SKYPILOT_TASK_ID") else "local",
                      spot=spot and accelerator != "cpu", purpose=f"replica {replica}", price_source=source):
        if backend == "vllm":
            proc = subprocess.Popen(vllm_command(ckpt, port=port, name=rm.name, vllm=vllm))
            server = None
        else:
            server = LocalServer(ckpt, host="127.0.0.1", port=port, backend=backend).start()
            proc = server.proc
            print(f"ready at {server.base_url} model={server.model}", flush=True)
        t0 = time.time()
        try:
            while not stop["why"]:
                if proc.poll() is not None:
                    stop["why"] = f"server exited with code {proc.returncode}"
                elif max_seconds and time.time() - t0 >= max_seconds:
                    stop["why"] = "max_seconds"
                elif ledger.spent("serving") >= cap:
                    stop["why"] = "serving cap reached"
                else:
                    time.sleep(1.0)
        finally:
            if server is not None:
                server.stop()
            elif proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(f"replica stopped: {stop['why']}; serving spent ${ledger.spent('serving'):,.4f}", flush=True)
    return 0 if stop["why"] in ("SIGTERM", "max_seconds") else 1


@cli
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lib.serve.cloud", description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", required=True)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--backend", choices=("vllm", "transformers"), default=os.environ.get("SERVE_BACKEND") or "vllm")
    p.add_argument("--on-demand", action="store_true", help="price the node on-demand instead of spot")
    p.add_argument("--heartbeat-s", type=float, default=300.0)
    p.add_argument("--max-seconds", type=float, default=float(os.environ.get("SERVE_MAX_SECONDS") or 0))
    p.add_argument("--vllm", default=os.environ.get("VLLM_BIN") or "vllm", help="the vllm executable")
    a = p.parse_args(argv)
    sys.exit(serve_replica(a.run_dir, port=a.port, backend=a.backend, spot=not a.on_demand, heartbeat_s=a.heartbeat_s,
                           max_seconds=a.max_seconds, vllm=a.vllm))


if __name__ == "__main__":
    main()
