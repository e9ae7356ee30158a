"""Secrets: the key that pays for a run never lands in anything the run writes.

The key is a random canary (`sk-canary-<hex>`) in an environment variable that the endpoint
names (`api_key_env`). The teacher sits behind a FaultProxy that *requires* that exact key,
so every call that succeeds proves the key really travelled with the request; then every
byte the run left behind (executed notebooks, logs, ledger, reports, saved configs, data)
and the commands' own stdout/stderr are searched for it.

Run: .venv/bin/pytest tests/test_hardening_secrets.py -q
"""
from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from lib.testing.faultproxy import FaultProxy

REPO = Path(__file__).resolve().parent.parent
KEY_ENV = "SHEAR_CANARY_KEY"
TINY_BUDGETS = """currency: USD
phases:
  data:       {target: 1, cap: 2, warn: 0.8}
  training:   {target: 1, cap: 2, warn: 0.8}
  evaluation: {target: 1, cap: 2, warn: 0.8}
  serving:    {target: 1, cap: 1, warn: 0.8}
"""


def _canary() -> str:
    return f"sk-canary-{secrets.token_hex(16)}"


def _forms(key: str) -> list[bytes]:
    """The key as it could be written: raw, JSON/URL-escaped (identical here), base64, the hex tail."""
    raw = key.encode()
    return [raw, base64.b64encode(raw), raw.split(b"-")[-1]]


def find_key(root: Path, key: str) -> list[str]:
    """Every file under root holding the key in any of its forms (binary files included)."""
    hits = []
    forms = _forms(key)
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if any(f in data for f in forms):
                hits.append(str(p.relative_to(root)))
    return hits


def _env(key: str, **extra) -> dict:
    env = dict(os.environ)
    env.update({KEY_ENV: key, "OPENAI_API_KEY": key, "HF_HUB_OFFLINE": "1", **extra})
    return env


def test_gitignore_keeps_runs_and_credentials_out_of_git():
    must_ignore = ["runs/run-1/ledger/generate.jsonl", "runs/x/01_generate.ipynb", ".env", "credentials.json",
                   "openai.key", ".cache/models/x/model.safetensors", ".env.prod", "server.pem", ".netrc",
                   "id_rsa", "api.secret"]
    p = subprocess.run(["git", "check-ignore", "--no-index", *must_ignore], cwd=REPO, capture_output=True, text=True)
    ignored = set(p.stdout.split())
    assert ignored == set(must_ignore), f"not ignored by .gitignore: {sorted(set(must_ignore) - ignored)}"
    # the guard is not vacuous: project files stay tracked
    p = subprocess.run(["git", "check-ignore", "--no-index", "lib/core/client.py", "budgets.yaml"], cwd=REPO,
                       capture_output=True, text=True)
    assert p.stdout.strip() == ""


def test_the_search_finds_a_planted_key(tmp_path):
    key = _canary()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "log.txt").write_text(f"Authorization: Bearer {key}\n")
    (tmp_path / "b.bin").write_bytes(b"\x00" + base64.b64encode(key.encode()) + b"\x00")
    (tmp_path / "clean.json").write_text('{"api_key_env": "SHEAR_CANARY_KEY"}')
    assert find_key(tmp_path, key) == ["a/log.txt", "b.bin"]


def test_wrong_key_is_refused_so_the_proxy_really_checks_it(local_server, tmp_path):
    """Control for the tests below: without the canary in the environment, nothing gets through."""
    import openai

    with FaultProxy(local_server.base_url, require_key=_canary()) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="sk-someone-else", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model=local_server.model, max_tokens=2,
                                           messages=[{"role": "user", "content": "hi"}])


LIB_SCRIPT = textwrap.dedent("""
    import sys
    from lib.budget import write_report
    from lib.core.client import chat, make_client
    from lib.run import RunContext

    run_dir, base_url, model, budgets = sys.argv[1:5]
    ctx = RunContext(run_dir, phase="data", writer="secrets", budgets_path=budgets)
    with ctx.endpoint(base_url=base_url, model=model, api_key_env="SHEAR_CANARY_KEY") as ep:
        print("endpoint", ep, ep.public(), flush=True)           # what a notebook would show
        client = make_client(ep)
        for i in range(2):
            text, resp = chat(client, ep, [{"role": "user", "content": f"Name a color ({i})."}],
                              ledger=ctx.ledger, phase="data", purpose="secrets-test", max_tokens=8)
            print("reply", repr(text), resp.usage, flush=True)
    write_report(ctx.run_dir, ctx.budgets)
    print("spent", ctx.ledger.spent("data"), len(ctx.ledger.records()), flush=True)
""")


def test_key_never_reaches_the_run_dir_through_lib(local_server, tmp_path):
    key = _canary()
    run_dir = tmp_path / "run"
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(TINY_BUDGETS)
    with FaultProxy(local_server.base_url, require_key=key) as proxy:
        p = subprocess.run([sys.executable, "-c", LIB_SCRIPT, str(run_dir), proxy.base_url, local_server.model,
                            str(budgets)], cwd=REPO, env=_env(key), capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        # the calls went through with the canary (a wrong key would have been a 401)
        assert proxy.stats.get("unauthorized", 0) == 0 and proxy.stats["forwarded"] >= 2
    assert (run_dir / "ledger" / "secrets.jsonl").exists() and (run_dir / "report" / "budget.md").exists()
    assert find_key(run_dir, key) == []
    assert not any(f in (p.stdout + p.stderr).encode() for f in _forms(key))


def _tiny_profile() -> Path:
    return REPO / "lib" / "profiles" / "tiny.yaml"  # a missing profile or notebook fails the run below


@pytest.mark.full  # a whole tiny loop (minutes on 2 cores); the default suite keeps the lib-level case above
def test_key_never_reaches_any_artifact_of_a_pipeline_run(local_server, tmp_path):
    """The whole loop (tiny profile) with a keyed teacher/judge: grep every artifact for the key."""
    key = _canary()
    prof = yaml.safe_load(_tiny_profile().read_text())
    prof["teacher"] = {"base_url": "{proxy}", "model": local_server.model, "api_key_env": KEY_ENV}
    runs = tmp_path / "runs"
    with FaultProxy(local_server.base_url, require_key=key) as proxy:
        prof["teacher"]["base_url"] = proxy.base_url
        path = tmp_path / "canary.yaml"
        path.write_text(yaml.safe_dump(prof))
        p = subprocess.run([sys.executable, "-m", "lib.pipeline", "run", "--profile", str(path), "--run-id", "canary"],
                           cwd=REPO, env=_env(key, SHEAR_RUNS=str(runs)), capture_output=True, text=True, timeout=1200)
        stats = proxy.stats
    assert p.returncode == 0, p.stderr[-3000:]
    assert stats.get("unauthorized", 0) == 0 and stats.get("forwarded", 0) > 0, stats
    run_dir = runs / "canary"
    executed = sorted(x.name for x in run_dir.glob("*.ipynb"))
    assert executed == sorted(f"{n}.ipynb" for n in prof["notebooks"]), executed
    assert list((run_dir / "ledger").glob("*.jsonl")) and list((run_dir / "logs").iterdir())
    assert find_key(run_dir, key) == []
    assert not any(f in (p.stdout + p.stderr).encode() for f in _forms(key))
