"""Shared fixtures: the embedded model, a real local OpenAI-compatible server, shared data.

The server is the product's own teacher and judge: llama.cpp's server on the GGUF the
package ships (lib.core.server.embedded_server, what `make demo` and the notebooks start).
It is session-scoped (one process per pytest-xdist worker), so every test that needs a
teacher or judge talks to the same real process on 127.0.0.1. `transformers serve` stays
in the tests about that backend (serving a trained checkpoint: tests/test_serve.py; the
server's lifecycle: tests/test_server.py) and behind `stateless_server`, for the kill tests
that need a greedy reply not to depend on the server's history.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two xdist workers on CI's two cores: one OpenMP thread per process (torch in
    # the worker, the notebooks' kernels, training subprocesses, transformers serve), as the shared
    # llama.cpp server has. Two threads per process spin-wait on cores the other worker holds;
    # measured 2026-12-06 on this 2-core machine: the generation kill test took 1,016 s that way
    # and 58 s on a quiet machine.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "full: long-running case, run by `make test-full` (the fast subset runs in CI)")


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    from lib.core.model import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def local_server(tmp_path_factory):
    from lib.core.server import embedded_server

    # One llama.cpp thread: the suite keeps the other core busy (a training, a kernel, a second
    # xdist worker), and llama.cpp's threads wait for each other by spinning, so two of them on
    # shared cores collapse. Measured 2026-12-06 on this 2-core machine at load ~13: a 65-token
    # greedy reply took 100-270 s with 2 threads and 6 s with 1 (three requests each, one server).
    with embedded_server(log_path=tmp_path_factory.mktemp("server") / "server.log", threads=1) as srv:
        yield srv


@pytest.fixture(scope="session")
def stateless_server(embedded_model, tmp_path_factory):
    """`transformers serve` on the embedded checkpoint, for the tests that compare greedy replies
    across runs (killed and resumed == uninterrupted). llama.cpp's server keeps the previous
    request's KV cache and evaluates only what a new prompt adds to it (llama_cpp.Llama.generate's
    prefix match), which changes the numerics: its greedy reply to one prompt depends on what it
    was asked before (test_hardening_kill's judging case failed that way: "Write a short
    thank-you note" came back as "Write a thank-you note" after the resume)."""
    from lib.core.server import LocalServer

    # One thread, as local_server and every process under xdist (the reason is at the top of this file).
    with LocalServer(embedded_model, log_path=tmp_path_factory.mktemp("server") / "stateless.log", threads=1) as srv:
        yield srv


@pytest.fixture(scope="session")
def tiny_loop(local_server):
    """The default suite's one tiny end-to-end loop (tests/tiny_loop.py): every notebook executed
    once from notebooks/, as `make lab` runs them, into runs/lab-test-<id>/; shared by the
    tests that assert on it, removed at the end of the session."""
    from tests.tiny_loop import tiny_loop as run_loop

    with run_loop(local_server) as loop:
        yield loop


def pytest_collection_modifyitems(config, items):
    # Under pytest-xdist a session fixture is set up once per worker: `--dist loadgroup` sends
    # every test of one group to one worker, so the loop runs once however many workers there are.
    # The first of them sets the loop up, inside its own time limit: the loop's is the whole loop's.
    # Likewise a module-scoped fixture (a trained tiny model, a rehearsed task) is built once per
    # worker that runs a test of its module: the tests of such a module go to one worker together.
    for item in items:
        if "tiny_loop" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("tiny_loop"))
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(2400))
        elif uses_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    if getattr(config.option, "loadgroup", False):  # an xdist worker under --dist loadgroup
        name_groups(items)


def uses_module_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs if info is not None else {}
    return any(d and d[-1].scope == "module" for d in (defs.get(n) for n in getattr(item, "fixturenames", ())))


def name_groups(items) -> None:
    """Put each test's xdist group into its node id, as pytest-xdist 3.8 means to: it writes the
    suffix to `item._nodeid`, which pytest 9.2 no longer reads (a node's id is `item._id`), so every
    group was scattered over the workers and the tiny loop ran once per worker (seen 2026-12-06:
    two ~390 s setups in one `make test`). The scheduler groups by the `@group` suffix of the ids."""
    from _pytest.nodeid import NodeId  # pytest's own id type (9.x)

    for item in items:
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                         for m in item.iter_markers("xdist_group")})
        if groups and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")


@pytest.fixture(scope="session")
def local_endpoint(local_server):
    from lib.core.client import Endpoint

    return Endpoint(base_url=local_server.base_url, model=local_server.model)


@pytest.fixture
def evaluation_capped(tmp_path):
    """`capped(usd)` -> (ledger, guard) of a run whose evaluation phase may spend only `usd`
    (the other phases get $1): the cap tests of judging and of answering share it."""
    from lib.budget import BudgetGuard, Ledger, load_budgets

    def capped(cap: float):
        path = tmp_path / "budgets.yaml"
        path.write_text(f"""currency: USD
phases:
  data:       {{target: 1, cap: 1, warn: 0.8}}
  training:   {{target: 1, cap: 1, warn: 0.8}}
  evaluation: {{target: {cap}, cap: {cap}, warn: 1.0}}
  serving:    {{target: 1, cap: 1, warn: 0.8}}
""")
        budgets = load_budgets(path)
        ledger = Ledger(tmp_path / "ledger", writer="evaluate", budgets=budgets)
        return ledger, BudgetGuard(budgets, ledger, "evaluation")

    return capped


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout. CI always has it, so there its absence is a failure:
    a skip would turn every comparison against the reference data into a silent pass."""
    if not SHARED_DATA.is_dir():
        where = f"{SHARED_DATA} is absent (the reference data sits beside the checkout)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{where}: CI must provide it", pytrace=False)
        pytest.skip(f"{where}: these tests run where it is, and fail in CI (CI=true) without it")
    return SHARED_DATA
