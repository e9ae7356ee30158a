"""Seed files from a URL are downloaded once: the cache name is a stable digest of the URL,
so a second process (a resumed run, the next notebook) finds the file instead of fetching it."""
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _serve(directory: Path):
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(directory), **kw)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, hits


def test_a_second_process_reads_the_seed_download_from_the_cache(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    lines = [{"id": f"s{i}", "instruction": f"Write a sentence about topic number {i}.",
              "instances": [{"input": "", "output": f"Topic {i} is interesting."}], "is_classification": False}
             for i in range(4)]
    (served / "seed_tasks.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    srv, hits = _serve(served)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/seed_tasks.jsonl"
        code = ("import sys; from lib.generate.seeds import load_seed_tasks; "
                "print(len(load_seed_tasks(sys.argv[1], language='en')))")
        env = {**os.environ, "SHEAR_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
        for salt in ("1", "2"):  # two processes whose str hashes surely differ; a digest does not
            out = subprocess.run([sys.executable, "-c", code, url], env={**env, "PYTHONHASHSEED": salt}, cwd=REPO, capture_output=True,
                                 text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == "4"
    finally:
        srv.shutdown()
    assert hits == ["/seed_tasks.jsonl"]  # downloaded by the first process only
    assert len(list((tmp_path / "cache" / "seeds").glob("*-seed_tasks.jsonl"))) == 1
