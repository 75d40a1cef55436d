"""A GLB shown by ``<model-viewer>`` (its default camera) in headless Chromium, captured with
the element's own ``toDataURL`` over the DevTools protocol (real time, so its render loop runs).

Needs ``chromium-headless-shell`` (Debian) on PATH, the ``websockets`` package and
model-viewer's bundle (``model-viewer.min.js`` from the npm package ``@google/model-viewer``,
e.g. ``npm pack @google/model-viewer``) named by ``KEY2MESH_MODEL_VIEWER_JS``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import http.server
import io
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

PAGE = """<!doctype html><html><head><style>html,body{margin:0}model-viewer{width:640px;
height:480px}</style><script type="module" src="model-viewer.min.js"></script></head><body>
<model-viewer id="mv" src="%s" autoplay></model-viewer><pre id="out">pending</pre><script>
const mv = document.getElementById('mv'), out = document.getElementById('out');
const seek = %s;  // animation time to show (paused), or null: as it plays
mv.addEventListener('load', () => setTimeout(async () => {
  if (seek !== null) { mv.pause(); mv.currentTime = seek; }
  setTimeout(async () => {
    try { out.textContent = await mv.toDataURL('image/png'); } catch (e) { out.textContent = 'error ' + e; }
  }, seek === null ? 0 : 1000);
}, %d));
mv.addEventListener('error', (e) => { out.textContent = 'error ' + JSON.stringify(e.detail); });
</script></body></html>"""


def model_viewer_shot(
    glb: Path, viewer_js: Path, work: Path, wait_ms: int = 2000, time_s: float | None = None
) -> bytes:
    """PNG bytes (640 x 480, transparent background) of ``glb`` in ``<model-viewer>``,
    ``wait_ms`` after it loaded (playing), or paused at animation time ``time_s`` seconds."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(glb, work / glb.name)
    shutil.copy(viewer_js, work / "model-viewer.min.js")
    (work / "page.html").write_text(
        PAGE % (glb.name, "null" if time_s is None else time_s, wait_ms)
    )
    handler = functools.partial(_Quiet, directory=str(work))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        return asyncio.run(_capture(f"http://127.0.0.1:{port}/page.html"))
    finally:
        server.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


async def _capture(url: str, timeout_s: float = 60.0) -> bytes:
    import socket

    import websockets

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    chrome = subprocess.Popen(
        [
            "chromium-headless-shell",
            "--no-sandbox",
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            f"--remote-debugging-port={port}",
            "--window-size=640,480",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip  (its own process group: the GPU / renderer children are stopped with it)
    try:
        for _ in range(100):
            try:
                tabs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
                break
            except OSError:
                time.sleep(0.2)
        ws_url = next(t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page")
        async with websockets.connect(ws_url, max_size=1 << 26) as ws:
            ids = iter(range(1, 1 << 30))

            async def call(method: str, **params) -> dict:
                n = next(ids)
                await ws.send(json.dumps({"id": n, "method": method, "params": params}))
                while True:
                    msg = json.loads(await ws.recv())
                    if msg.get("id") == n:
                        return msg

            await call("Page.navigate", url=url)
            start, value = time.time(), ""
            while time.time() - start < timeout_s:
                r = await call(
                    "Runtime.evaluate", expression="document.getElementById('out')?.textContent"
                )
                value = r["result"]["result"].get("value") or ""
                if value.startswith(("data:", "error")):
                    break
                await asyncio.sleep(0.5)
        if not value.startswith("data:"):
            raise RuntimeError(f"<model-viewer> gave no image: {value[:200]!r}")
        return base64.b64decode(value.split(",", 1)[1])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(chrome.pid, signal.SIGTERM)
        try:
            chrome.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(chrome.pid, signal.SIGKILL)
            chrome.wait()


def track_shares(png: bytes, colors) -> dict[int, float]:
    """{k: share of the canvas drawn nearest (in chromaticity, r g b / their sum) to
    ``colors[k]``} of a PNG with a transparent background."""
    import numpy as np
    from PIL import Image

    rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).astype(np.float64)
    drawn = rgba[..., 3] > 0
    rgb = rgba[..., :3][drawn]
    chroma = rgb / np.clip(rgb.sum(1, keepdims=True), 1e-6, None)
    ref = np.asarray(colors, np.float64)
    ref = ref / ref.sum(1, keepdims=True)
    near = np.argmin(((chroma[:, None] - ref[None]) ** 2).sum(-1), axis=1)
    return {k: float((near == k).sum() / drawn.size) for k in range(len(ref))}
