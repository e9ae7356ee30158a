"""Headless Chromium for tests: open an executed notebook as a reader would, and ask the
browser itself whether each figure decoded.

`make setup`/`make test` install Debian's `chromium` when it is missing (the Makefile's
$(CHROMIUM) target). Nothing here reaches the network: every host name resolves to
"not found", so nbconvert's CDN script tags fail at once instead of waiting for a timeout.
"""
from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND"]

# Runs on `load`, which fires only after every <img> has loaded or failed: a PNG that does
# not decode has naturalWidth 0.
_CHECK = """<script>
window.addEventListener("load", function () {
  var out = document.createElement("pre");
  out.id = "figure-check";
  out.textContent = JSON.stringify(Array.from(document.images).map(function (img) {
    return {width: img.naturalWidth, height: img.naturalHeight, complete: img.complete};
  }));
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is not installed: run `make setup` (it installs Debian's chromium) or apt-get install chromium"
    return exe


def notebook_html(nb_path: Path) -> str:
    """The executed notebook as nbconvert's standard HTML page (images inline as data: URIs)."""
    import nbformat
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_notebook_node(nbformat.read(nb_path, as_version=4))
    return html


def figures_in_browser(html: str, *, timeout: float = 120) -> list[dict]:
    """Load `html` in headless Chromium; one {width, height, complete} per <img>, as decoded."""
    assert "</body>" in html
    with tempfile.TemporaryDirectory(prefix="shear-chromium-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(html.replace("</body>", _CHECK + "</body>", 1), encoding="utf-8")
        proc = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={tmp}/profile", "--virtual-time-budget=10000",
             "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=timeout)
    found = re.search(r'<pre id="figure-check">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"chromium exited {proc.returncode} without running the check: {proc.stderr[-1500:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])
