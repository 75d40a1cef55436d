"""``key2mesh demo ... --view``: the viewer follows the demo while it runs, on one page.

The demo reads its frames twice (:mod:`~key2mesh.inference.demo`): while it detects and tracks,
the page shows each frame read and the count; once the motion is written (before the second,
rendering pass) the page turns into the full viewer of the output folder and its clock follows
the frames being rendered; when the demo ends it reloads with the overlay video and keeps
serving until Ctrl-C. Nothing in the demo's own code changes: the frame source is wrapped."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from key2mesh.viewer.app import (
    VIDEO_WIDTH,
    Viewer,
    open_server,
    server_url,
    wait_until_stopped,
)


class DemoView:
    """Wraps the demo's frame source (:meth:`frames`); ``out_dir`` and ``stem``: where the demo
    writes ``<stem>_params.npz``; ``indices``: the source frame of each frame read; ``fps``."""

    def __init__(
        self,
        out_dir: Path,
        stem: str,
        indices,
        fps: float,
        port: int = 8080,
        host: str = "127.0.0.1",
        open_browser: bool = True,
    ):
        self.out_dir, self.stem = Path(out_dir), stem
        self.indices, self.fps = list(indices), fps
        self.server = open_server(host, port, "key2mesh demo")
        self.url = server_url(host, self.server)
        self.viewer: Viewer | None = None
        self.calls = 0
        self.g_status = self.server.gui.add_markdown("starting")
        self.g_frame = None
        print(f"viewer: {self.url}")
        if open_browser:
            import webbrowser

            webbrowser.open(self.url)

    def frames(self, source: Callable[[], Iterable[np.ndarray]]) -> Callable:
        """The demo's frame source, each pass shown on the page."""

        def wrapped():
            self.calls += 1
            if self.calls == 1:
                return self._detecting(source())
            return self._rendering(source())

        return wrapped

    def _detecting(self, frames: Iterable[np.ndarray]):
        from PIL import Image

        n = len(self.indices)
        for i, frame in enumerate(frames):
            h, w = frame.shape[:2]
            small = np.asarray(
                Image.fromarray(frame).resize((VIDEO_WIDTH, max(1, h * VIDEO_WIDTH // w)))
            )
            self.g_status.content = f"detecting and tracking: frame {i + 1} of {n}"
            if self.g_frame is None:
                self.g_frame = self.server.gui.add_image(small, format="jpeg", jpeg_quality=70)
            else:
                self.g_frame.image = small
            yield frame

    def _show_result(self, video: bool = True) -> Viewer | None:
        """The full viewer of the output folder on this page (None before the params exist)."""
        from key2mesh.viewer import load_bodies, load_scene

        params = self.out_dir / f"{self.stem}_params.npz"
        if not params.exists():
            return None
        self.server.scene.reset()
        self.server.gui.reset()
        scene = load_scene(params)
        if scene.videos and self.indices:  # its frame k is the k-th frame read (not the k-th
            video = scene.videos[0]  # after the first one with a person, as the file implies)
            step = self.indices[1] - self.indices[0] if len(self.indices) > 1 else 1
            video.start_s, video.interval_s = self.indices[0] / self.fps, step / self.fps
        return Viewer(scene, load_bodies(scene), video=video, server=self.server)

    def _rendering(self, frames: Iterable[np.ndarray]):
        self.viewer = self._show_result(video=False)  # the overlay video is being written
        for i, frame in enumerate(frames):
            if self.viewer is not None and i < len(self.indices):
                self.viewer.show(self.indices[i] / self.fps)
            yield frame

    def serve(self) -> None:
        """After the demo: the result with its overlay video, served until Ctrl-C."""
        self.viewer = self._show_result()
        if self.viewer is None:
            print("viewer: the demo wrote no motion to show")
            self.server.stop()
            return
        print(f"viewer: {self.url} (Ctrl-C to stop)")
        self.viewer.start()
        try:
            wait_until_stopped()
        finally:
            self.viewer.close()
