"""Many `python -m lib.launch` calls in ONE subprocess: SkyPilot's import (~4.5 CPU s) dominates each
call, so the tests that only read what the launcher prints share one process per environment (a HOME
with the catalog fixture of tests/sky_catalog.py, or none). Each call gets `lib.launch`'s own `main`
with its stdout and stderr captured and its exit code, as the command line would give them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

DRIVER = r"""
import contextlib, io, json, sys
from lib.launch.estimate import main
out = {}
for key, args in json.loads(sys.argv[1]).items():
    buf, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as e:
            code = e.code
    out[key] = {"stdout": buf.getvalue(), "stderr": err.getvalue(), "code": code}
print(json.dumps(out))
"""


def launch_many(calls: dict[str, list[str]], env: dict) -> dict[str, dict]:
    """{key: argv} -> {key: {"stdout", "stderr", "code"}} of `python -m lib.launch *argv`, in one process."""
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(calls)], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return {k: {**v, "code": v["code"] or 0} for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}
