"""The browser viewer (viser, the ``viewer`` extra): a :class:`~key2mesh.viewer.scene.Scene`
served on 127.0.0.1 — skinned bodies on the ground, camera frusta, one timeline (play / pause,
scrub, speed), per-track toggles, follow a person, look through the video camera, the overlay
video beside it.

The web client ships inside the viser wheel: nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import functools
import re
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from key2mesh.errors import Key2MeshError
from key2mesh.viewer.bodies import SkinnedBody, quaternions_wxyz
from key2mesh.viewer.scene import Scene, VideoScene

SPEEDS = ("0.25", "0.5", "1", "2")
VIDEO_WIDTH = 480  # px: the overlay video's width in the control panel
FREE, VIDEO = "free orbit", "video camera"


def import_viser():
    """viser, or a one-line error naming the extra to install."""
    try:
        import viser
    except ImportError:
        raise Key2MeshError(
            "the viewer needs viser: pip install 'key2mesh[viewer]' (or pip install viser)"
        ) from None
    return viser


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


# an IP address as a URL writes it: dotted IPv4, or IPv6 in brackets
_IP_LITERAL = r"\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:.]+\]"


def allowed_origins(host: str) -> list:
    """The ``Origin`` headers the viewer's websocket accepts when bound to ``host``: none (a
    non-browser client), or a page served by this machine under a loopback name or ``host``
    itself, any port. Any other web page the user has open is refused: viser checks no origin,
    so such a page could otherwise read the bodies, cameras and video frames being shown (a
    cross-site websocket hijack, also through DNS rebinding). A wildcard bind (``0.0.0.0``,
    ``::``) is reached under this machine's addresses, which it cannot list: any IP address is
    accepted there, and this machine's own host names, but no other name (a rebinding page
    comes under its own domain name)."""
    names = {*LOOPBACK_NAMES}
    if host in WILDCARD_HOSTS:
        names |= {socket.gethostname()} - {""}  # not getfqdn: a DNS lookup that may hang
        literal = f"|{_IP_LITERAL}"
    else:
        names.add(_url_host(host))
        literal = ""
    alternation = "|".join(re.escape(n) for n in sorted(names))
    return [None, re.compile(rf"^https?://({alternation}{literal})(:\d+)?$", re.IGNORECASE)]


@contextlib.contextmanager
def _websocket_origins(origins: list):
    """viser's websocket server started with ``origins`` checked (viser passes none to
    ``websockets``' ``serve``, which it looks up when it starts, in the constructor)."""
    import websockets.asyncio.server as ws_server

    serve = ws_server.serve
    ws_server.serve = functools.partial(serve, origins=origins)
    try:
        yield
    finally:
        ws_server.serve = serve


def open_server(host: str, port: int, label: str):
    """A viser server on ``host``:``port`` (viser takes the next free port when it is busy) whose
    websocket accepts the :func:`allowed_origins` only, or a one-line error when ``host`` is not
    an address of this machine: viser retries 1000 ports on any bind error and then waits
    forever, so the address is tried here first."""
    viser = import_viser()
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.bind(addr)
    except OSError as err:
        raise Key2MeshError(f"cannot serve on {host}:{port}: {err.strerror or err}") from None
    with _websocket_origins(allowed_origins(host)):
        return viser.ViserServer(host=host, port=port, label=label, verbose=False)


def _url_host(host: str) -> str:
    """``host`` as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def server_url(host: str, server) -> str:
    """The address a browser opens for a viser ``server`` bound to ``host``."""
    return f"http://{_url_host(host)}:{server.get_port()}"


def md_text(text: str) -> str:
    """``text`` as literal markdown: whitespace made spaces and every ASCII punctuation
    character backslash-escaped, so a file name shows as written, never as markup or HTML
    (viser's markdown renders raw HTML unsanitised)."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", re.sub(r"\s", " ", text))


def rgb255(color) -> tuple[int, int, int]:
    return tuple(int(round(255 * float(c))) for c in color)


def add_skinned_body(scene, path: str, body: SkinnedBody, color, **options):
    """Add ``body`` (its rest mesh and skin weights) to a viser ``scene`` as a skinned mesh at
    ``path``, every bone at rest (identity rotations); ``options``: viser's, e.g. visible."""
    return scene.add_mesh_skinned(
        path,
        body.vertices.astype(np.float32),
        body.faces.astype(np.uint32),
        bone_wxyzs=np.tile([1.0, 0.0, 0.0, 0.0], (len(body.skeleton.names), 1)),
        bone_positions=body.skeleton.rest,
        skin_weights=body.weights,
        color=rgb255(color),
        **options,
    )


@dataclass
class View:
    """A camera for the 3D view: ``position`` and ``look_at`` (3,) metres, ``up`` (3,),
    vertical field of view ``fov`` radians."""

    position: np.ndarray
    look_at: np.ndarray
    up: np.ndarray
    fov: float


def project(view: View, points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pixel coordinates (N, 2) of scene points (N, 3) in an image of ``size`` (W, H) seen from
    ``view`` (pinhole, vertical field of view ``view.fov``, principal point at the centre)."""
    w, h = size
    fwd = view.look_at - view.position
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, view.up)
    right = right / np.linalg.norm(right)
    down = np.cross(fwd, right)
    d = np.asarray(points, np.float64) - view.position
    f = 0.5 * h / np.tan(view.fov / 2)
    z = d @ fwd
    return np.stack([w / 2 + f * (d @ right) / z, h / 2 + f * (d @ down) / z], axis=-1)


def overview(scene: Scene, fov: float = 0.9) -> View:
    """A view of every track's path from the video camera's side, raised 25°: the paths' centre
    at pelvis height, far enough back to hold them all."""
    roots = np.concatenate([t.root for t in scene.tracks]) if scene.tracks else np.zeros((1, 3))
    lo, hi = roots.min(0), roots.max(0)
    center = (lo + hi) / 2
    extent = float(np.linalg.norm((hi - lo)[[0, 2]])) + 2.5
    toward = np.array([0.0, 0.0, 1.0])
    if scene.cameras:
        d = scene.cameras[0].position - center
        d[1] = 0.0
        if np.linalg.norm(d) > 1e-6:
            toward = d / np.linalg.norm(d)
    elev = np.deg2rad(25.0)
    dist = max(4.0, 0.6 * extent / np.tan(fov / 2))
    direction = np.cos(elev) * toward + np.sin(elev) * np.array([0.0, 1.0, 0.0])
    return View(center + dist * direction, center, np.array([0.0, 1.0, 0.0]), fov)


def camera_view(cam) -> View:
    """Look through a :class:`~key2mesh.viewer.scene.CameraScene`."""
    return View(cam.position, cam.position + 5.0 * cam.forward, -cam.rotation[:, 1], cam.yfov)


class VideoFrames:
    """Frames of an overlay video, read in order and cached (``cache`` frames), scaled to
    ``width`` px; the mesh-overlay panel of a demo frame is cropped out first."""

    def __init__(self, video: VideoScene, image_size: tuple[int, int] | None, width: int = 480):
        from key2mesh.media.video import source_info

        self.video, self.width, self.image_size = video, width, image_size
        self.num_frames = source_info(video.path).num_frames or None
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._it, self._next = None, 0
        self._lock = threading.Lock()

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        from PIL import Image

        from key2mesh.viewer.scene import overlay_crop

        h, w = frame.shape[:2]
        if self.image_size is not None:
            x0, x1 = overlay_crop(w, h, self.image_size)
            frame = frame[:, x0:x1]
        h, w = frame.shape[:2]
        size = (self.width, max(1, int(round(h * self.width / w))))
        return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))

    def __getitem__(self, k: int) -> np.ndarray | None:
        from key2mesh.media.video import iter_frames

        with self._lock:
            if k in self._cache:
                self._cache.move_to_end(k)
                return self._cache[k]
            if self._it is None or k < self._next:
                # the demo's own constant-rate H.264: seeking lands on frame k
                self._it, self._next = iter_frames(self.video.path, k, seek=True), k
            frame = None
            while self._next <= k:
                frame = next(self._it, None)
                if frame is None:  # past the end
                    self._it = None
                    return None
                self._next += 1
            out = self._prepare(frame)
            self._cache[k] = out
            while len(self._cache) > 240:
                self._cache.popitem(last=False)
            return out

    def close(self) -> None:
        """Release the video reader (a later frame opens it again)."""
        with self._lock:
            if self._it is not None:
                self._it.close()
            self._it, self._next = None, 0


class Viewer:
    """A viser server showing ``scene`` (bodies from ``bodies`` {track name: SkinnedBody};
    ``video``: show the overlay videos; ``server``: an existing viser server to draw on);
    :meth:`show` sets the clock, :meth:`start` runs it until :meth:`close`."""

    def __init__(
        self,
        scene: Scene,
        bodies: dict[str, SkinnedBody],
        host: str = "127.0.0.1",
        port: int = 8080,
        video: bool = True,
        server=None,
    ):
        self.scene, self.bodies = scene, bodies
        self.server = server or open_server(host, port, "key2mesh")
        self.url = server_url(host, self.server)
        self.clock = scene.clock
        self.time = float(self.clock[0])
        self.playing = False
        self.follow: str | None = None
        self._followed_at: np.ndarray | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames = (
            [VideoFrames(v, _image_size(scene), VIDEO_WIDTH) for v in scene.videos] if video else []
        )
        self._build()
        self.show(self.time)

    # --- scene -----------------------------------------------------------------------------
    def _build(self) -> None:
        sc, s = self.scene, self.server.scene
        self.server.gui.configure_theme(control_width="large", show_share_button=False)
        s.set_up_direction("+y")
        g = sc.ground
        s.add_grid(
            "/ground",
            width=g.size,
            height=g.size,
            plane="xz",
            position=(g.center[0], g.height, g.center[1]),
            plane_color=(235, 235, 230),
            plane_opacity=0.6 if g.estimated else 0.25,
            shadow_opacity=0.2,
        )
        for name, level in g.levels.items():
            tr = next(t for t in sc.tracks if t.name == name)
            lo, hi = tr.root[:, [0, 2]].min(0) - 0.6, tr.root[:, [0, 2]].max(0) + 0.6
            s.add_box(
                f"/platforms/{name}",
                color=(190, 190, 180),
                dimensions=(
                    float(hi[0] - lo[0]),
                    max(level - g.height, 0.01),
                    float(hi[1] - lo[1]),
                ),
                position=(
                    float(lo[0] + hi[0]) / 2,
                    (level + g.height) / 2,
                    float(lo[1] + hi[1]) / 2,
                ),
                opacity=0.35,
            )
        self.frusta = {}
        for i, cam in enumerate(sc.cameras):
            self.frusta[cam.name] = s.add_camera_frustum(
                f"/cameras/{i}",
                fov=cam.yfov,
                aspect=cam.aspect,
                scale=0.5,
                color=(40, 40, 40),
                wxyz=cam.wxyz,
                position=cam.position,
            )
        self.meshes = {}
        for tr in sc.tracks:
            b = self.bodies[tr.name]
            self.meshes[tr.name] = add_skinned_body(
                s, f"/people/{tr.name.replace('/', '_')}", b, tr.color, visible=False
            )
        self._gui()
        view = overview(sc)
        ic = self.server.initial_camera
        ic.position, ic.look_at, ic.up, ic.fov = view.position, view.look_at, view.up, view.fov
        self.server.on_client_connect(lambda client: self.set_view(view, client))

    def _gui(self) -> None:
        gui, sc = self.server.gui, self.scene
        n = len(self.clock)
        self.g_title = gui.add_markdown(f"**{md_text(sc.title)}**") if sc.title else None
        with gui.add_folder("Timeline"):
            self.g_time = gui.add_slider(
                "Time (s)",
                min=float(self.clock[0]),
                max=float(self.clock[-1]) if n > 1 else float(self.clock[0]) + 1e-3,
                step=round(self.scene.interval_s, 6),
                initial_value=float(self.clock[0]),
            )
            self.g_play = gui.add_checkbox("Play", initial_value=False)
            self.g_loop = gui.add_checkbox("Loop", initial_value=True)
            self.g_speed = gui.add_dropdown("Speed", SPEEDS, initial_value="1")
            self.g_info = gui.add_markdown("")
        self.g_time.on_update(lambda _: self._scrubbed())
        self.g_play.on_update(lambda _: setattr(self, "playing", self.g_play.value))
        with gui.add_folder("People"):
            self.g_tracks = {
                tr.name: gui.add_checkbox(f"{tr.name} (from {tr.start_s:.2f} s)", True)
                for tr in sc.tracks
            }
            self.g_follow = gui.add_dropdown(
                "Follow", ("nobody", *(t.name for t in sc.tracks)), initial_value="nobody"
            )
        for cb in self.g_tracks.values():
            cb.on_update(lambda _: self.show(self.time))
        self.g_follow.on_update(lambda _: self._set_follow(self.g_follow.value))
        with gui.add_folder("View"):
            self.g_views = gui.add_button_group("Look", (FREE, *(c.name for c in sc.cameras)))
        self.g_views.on_click(lambda ev: self._look(ev.target.value, ev.client))
        self.g_video = None
        if self.frames:
            with gui.add_folder("Overlay video"):
                first = self.frames[0][0]
                if first is not None:
                    self.g_video = gui.add_image(first, format="jpeg", jpeg_quality=80)
        self.g_notes = (
            gui.add_markdown("\n".join(f"- {md_text(n)}" for n in sc.notes)) if sc.notes else None
        )

    # --- state -----------------------------------------------------------------------------
    def _scrubbed(self) -> None:
        if abs(self.g_time.value - self.time) > 1e-6:
            self.show(float(self.g_time.value), from_slider=True)

    def _set_follow(self, name: str) -> None:
        with self._lock:
            self.follow = None if name == "nobody" else name
            self._followed_at = None
            if self.follow is not None:
                root = self._root(self.follow)
                if root is not None:
                    for client in self.server.get_clients().values():
                        client.camera.look_at = root
                    self._followed_at = root

    def _root(self, name: str) -> np.ndarray | None:
        tr = next(t for t in self.scene.tracks if t.name == name)
        k = self.scene.visible(self.time).get(name)
        return None if k is None else tr.root[k].copy()

    def _look(self, which: str, client=None) -> None:
        """Look through camera ``which`` (its frustum hidden), or back to the overview."""
        for name, frustum in self.frusta.items():
            frustum.visible = name != which
        if which == FREE:
            view = overview(self.scene)
        else:
            view = camera_view(next(c for c in self.scene.cameras if c.name == which))
        self.set_view(view, client)

    def set_view(self, view: View, client=None) -> None:
        """Move one client's camera (every client's when None) to ``view``."""
        clients = [client] if client is not None else list(self.server.get_clients().values())
        for c in clients:
            with c.atomic():
                c.camera.fov = view.fov
                c.camera.position = view.position
                c.camera.look_at = view.look_at
                c.camera.up_direction = view.up

    def show(self, t: float, from_slider: bool = False) -> None:
        """Pose every body at clock time ``t`` (seconds); hide the people not tracked then."""
        with self._lock:
            self.time = float(np.clip(t, self.clock[0], self.clock[-1]))
            shown = self.scene.visible(self.time)
            with self.server.atomic():
                for tr in self.scene.tracks:
                    mesh = self.meshes[tr.name]
                    k = shown.get(tr.name)
                    on = k is not None and self.g_tracks[tr.name].value
                    if on:
                        b = self.bodies[tr.name]
                        q = quaternions_wxyz(b.rotations[k])
                        for j, bone in enumerate(mesh.bones):
                            bone.wxyz = q[j]
                            bone.position = b.positions[k, j]
                    mesh.visible = on
                if not from_slider:
                    self.g_time.value = self.time
                people = ", ".join(md_text(name) for name in shown) or "nobody"
                self.g_info.content = f"t = {self.time:.2f} s · shown: {people}"
                self._follow_camera()
            self._show_video()

    def _follow_camera(self) -> None:
        if self.follow is None:
            return
        root = self._root(self.follow)
        if root is None:
            return
        if self._followed_at is not None:
            delta = root - self._followed_at
            for client in self.server.get_clients().values():
                client.camera.position = client.camera.position + delta
        self._followed_at = root

    def _show_video(self) -> None:
        if self.g_video is None:
            return
        fr = self.frames[0]
        k = fr.video.frame_at(self.time, fr.num_frames)
        image = fr[k] if k is not None else None
        if image is not None:
            self.g_video.image = image

    # --- playback --------------------------------------------------------------------------
    def step(self, dt: float) -> None:
        """Advance the clock by ``dt`` seconds of wall time × the chosen speed (from the start
        when it stands at the end: Play pressed there without Loop)."""
        if self.time >= self.clock[-1] and len(self.clock) > 1:
            self.show(float(self.clock[0]))
            return
        t = self.time + dt * float(self.g_speed.value)
        if t > self.clock[-1]:
            t = self.clock[0] if self.g_loop.value else self.clock[-1]
            if not self.g_loop.value:
                self.playing = False
                self.g_play.value = False
        self.show(t)

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(max(0.0, min(self.scene.interval_s, 0.1) - 0.002))
            now = time.perf_counter()
            if self.playing:
                self.step(now - last)
            last = now

    def start(self, playing: bool = False) -> None:
        """Run the clock in a background thread (``playing``: start playing)."""
        self.playing = playing
        self.g_play.value = playing
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for frames in self.frames:
            frames.close()
        self.server.stop()


def wait_until_stopped(max_seconds: float | None = None) -> None:
    """Block until Ctrl-C or SIGTERM (or ``max_seconds``): how the viewer commands serve. Both
    signals are caught here (a background job started by a shell ignores SIGINT)."""
    import math
    import signal

    stop = threading.Event()
    handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            handlers[sig] = signal.signal(sig, lambda *_: stop.set())
        except ValueError:  # not the main thread: Ctrl-C is not ours to catch
            pass
    try:
        stop.wait(None if max_seconds is None or math.isinf(max_seconds) else max_seconds)
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)


def _image_size(scene: Scene) -> tuple[int, int] | None:
    return scene.cameras[0].image_size if scene.cameras else None


class LiveViewer:
    """The live mode's page: each tracked person's skinned body posed from the newest frame
    (camera frame, the video camera at the origin), the frame itself and the per-stage
    latency table (:class:`~key2mesh.viewer.live.RecentStats`). Track ids never repeat, so the
    scene stays bounded: the bodies of the ``hidden`` people seen most recently but not in the
    frame are kept (hidden) for when they come back, older ones are removed."""

    def __init__(
        self,
        kit,
        host: str = "127.0.0.1",
        port: int = 8080,
        fov: float = 0.9,
        hidden: int = 4,
    ):
        from key2mesh.viewer.live import RecentStats

        self.kit = kit
        self.server = open_server(host, port, "key2mesh live")
        self.url = server_url(host, self.server)
        s, gui = self.server.scene, self.server.gui
        gui.configure_theme(control_width="large", show_share_button=False)
        s.set_up_direction("+y")
        self.grid = s.add_grid("/ground", width=12, height=12, plane="xz", position=(0, -1.6, -5))
        self.frustum = s.add_camera_frustum(
            "/cameras/video", fov=fov, aspect=16 / 9, scale=0.4, color=(40, 40, 40),
            wxyz=(0.0, 1.0, 0.0, 0.0),  # OpenCV axes in the y-up frame: x kept, y and z flipped
        )  # fmt: skip
        self.fov = fov
        self.hidden = hidden
        self.meshes: OrderedDict[int, tuple] = OrderedDict()  # track → (body, mesh), oldest first
        self.recent = RecentStats()
        self.lowest = np.inf
        with gui.add_folder("Latency (last 30 frames)"):
            self.g_stats = gui.add_markdown("waiting for the first frame")
        with gui.add_folder("Camera"):
            self.g_frame = None
        ic = self.server.initial_camera
        ic.position, ic.look_at = (2.5, 1.0, 1.5), (0.0, -0.5, -5.0)

    def _body(self, person):
        from key2mesh.inference.render import track_color
        from key2mesh.viewer.bodies import skinned_body
        from key2mesh.viewer.scene import TrackScene

        tr = TrackScene(
            f"track{person.track}", person.track, track_color(person.track), np.zeros(1, int),
            np.zeros(1), person.rotmats[None].astype(np.float64), person.root[None],
            person.shape, getattr(self.kit.body, "name", "anny"), np.zeros(1, bool),
        )  # fmt: skip
        b = skinned_body(self.kit, tr)
        mesh = add_skinned_body(self.server.scene, f"/people/track{person.track}", b, tr.color)
        return b, mesh

    def update(self, people, frame: np.ndarray | None = None) -> None:
        """Pose the bodies of ``people`` (:class:`~key2mesh.viewer.live.LivePerson`); hide the
        others, removing all but the ``hidden`` most recently seen; show ``frame`` (RGB) scaled
        to the panel."""
        from key2mesh.viewer.bodies import bone_poses

        seen = set()
        with self.server.atomic():
            for p in people:
                if p.track not in self.meshes:
                    self.meshes[p.track] = self._body(p)
                self.meshes.move_to_end(p.track)
                b, mesh = self.meshes[p.track]
                g, pos = bone_poses(b.skeleton, p.rotmats[None].astype(np.float64), p.root[None])
                q = quaternions_wxyz(g[0])
                for j, bone in enumerate(mesh.bones):
                    bone.wxyz = q[j]
                    bone.position = pos[0, j]
                mesh.visible = True
                seen.add(p.track)
                self.lowest = min(self.lowest, float(p.root[1]) - 1.0)
            gone = [t for t in self.meshes if t not in seen]  # least recently seen first
            old = max(0, len(gone) - self.hidden)
            for t in gone[:old]:
                self.meshes.pop(t)[1].remove()
            for t in gone[old:]:
                self.meshes[t][1].visible = False
            if np.isfinite(self.lowest):
                self.grid.position = (0.0, self.lowest, -5.0)
        if frame is not None:
            from PIL import Image

            h, w = frame.shape[:2]
            small = np.asarray(
                Image.fromarray(frame).resize((VIDEO_WIDTH, max(1, h * VIDEO_WIDTH // w)))
            )
            if self.g_frame is None:
                self.g_frame = self.server.gui.add_image(small, format="jpeg", jpeg_quality=70)
                self.frustum.aspect = w / h
            else:
                self.g_frame.image = small

    def report(self, timing) -> None:
        """Add a frame's timing to the latency table shown."""
        self.recent.add(timing)
        self.g_stats.content = self.recent.table()

    def close(self) -> None:
        self.server.stop()
