"""Headless screenshots of the viewer: a headless Chromium (Debian's ``chromium-headless-shell``,
or ``$KEY2MESH_CHROMIUM``) opens the page, and the page itself renders the view (viser's
``get_render``), so the PNG is exactly what a user's browser draws."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from key2mesh.errors import Key2MeshError

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The headless browser to use: ``$KEY2MESH_CHROMIUM`` or the first of :data:`BROWSERS`
    on the PATH (None when there is none)."""
    env = os.environ.get("KEY2MESH_CHROMIUM")
    if env:
        return env if shutil.which(env) or Path(env).exists() else None
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def launch_headless(url: str, size: tuple[int, int]) -> subprocess.Popen:
    """Start a headless Chromium on ``url`` with a ``size`` (W, H) window (software WebGL)."""
    exe = find_chromium()
    if exe is None:
        raise Key2MeshError(
            "--screenshot needs a headless Chromium: apt-get install chromium-headless-shell "
            "(or set KEY2MESH_CHROMIUM to a Chromium / Chrome binary)"
        )
    args = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu-sandbox",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--no-first-run",
        "--mute-audio",
        f"--window-size={size[0]},{size[1]}",
        "--remote-debugging-port=0",  # keeps the headless shell running on the page
        url,
    ]
    # its own process group, so stop_browser ends the renderer and GPU processes with it
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop_browser(proc: subprocess.Popen) -> None:
    """End a :func:`launch_headless` browser and every process it started (the headless
    shell keeps running on SIGTERM while its page is open: SIGKILL after 3 s)."""
    import signal

    for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for_client(server, timeout: float = 60.0, browser: subprocess.Popen | None = None):
    """The first browser connected to a viser ``server`` (a one-line error after ``timeout``,
    or as soon as the ``browser`` process started for it has exited)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        clients = server.get_clients()
        if clients:
            return next(iter(clients.values()))
        if browser is not None and browser.poll() is not None:
            raise Key2MeshError(
                f"the headless browser {browser.args[0]} exited (status {browser.returncode}) "
                "before it opened the viewer"
            )
        time.sleep(0.1)
    raise Key2MeshError(f"no browser connected to the viewer within {timeout:.0f} s")


def on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 with a transparent background → (H, W, 3) over white."""
    if rgba.shape[-1] == 3:
        return rgba
    a = rgba[..., 3:].astype(np.float32) / 255.0
    return (rgba[..., :3] * a + 255.0 * (1 - a)).round().astype(np.uint8)


def screenshot(viewer, path: str | Path, t: float | None = None, size=(960, 540), view=None):
    """Write ``viewer``'s 3D view at clock time ``t`` (seconds; default: its current time) as
    a PNG ``path`` of ``size`` (W, H) px, rendered by a headless Chromium; ``view``: a
    :class:`~key2mesh.viewer.app.View` (default: the overview). Returns the image (H, W, 3)."""
    from key2mesh.media.video import write_image
    from key2mesh.viewer.app import overview

    w, h = size
    browser = launch_headless(viewer.url, (w, h))
    try:
        client = wait_for_client(viewer.server, browser=browser)
        viewer.show(viewer.time if t is None else t)
        viewer.set_view(view or overview(viewer.scene), client)
        time.sleep(1.0)  # the scene and the poses reach the page
        client.flush()
        image = client.get_render(h, w, transport_format="png", timeout=180)
    finally:
        stop_browser(browser)
    out = on_white(np.asarray(image))
    write_image(Path(path), out)
    return out
