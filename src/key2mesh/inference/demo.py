"""The demo pipeline: frames → MediaPipe BlazePose (several people) → tracking → Key2Mesh →
camera fit → params npz, exports, overlay + side view.

Two streaming passes, so memory stays bounded however long the video is:

1. frames are read one at a time, people detected (:class:`~key2mesh.media.multi_detect.
   MultiPersonDetector`, the tracker's predicted boxes as hints) and tracked
   (:class:`~key2mesh.inference.tracking.Tracker`); only their 2D keypoints are kept
   (a few hundred bytes per person and frame). The motion is then predicted, fitted and smoothed
   per track (:func:`~key2mesh.inference.motion.build_motion`) and written.
2. the frames are read again, one at a time: every person's mesh is rendered in its track's
   colour over the frame, the panel written to the video (or a PNG), and the frame dropped.
   A source wrapped in :class:`ReplayableFrames` (the ``demo`` command's) keeps the frames of
   a clip under 1 GiB from the first pass instead of decoding them twice; longer ones stream.

Decoding runs a thread ahead and encoding a thread behind (:mod:`key2mesh.media.video`), the
side view is drawn by a thread while the overlay is, and the detector searches regions two at
a time (:class:`~key2mesh.media.multi_detect.MultiPersonDetector`'s ``workers``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from key2mesh.devices import torch_threads
from key2mesh.errors import Key2MeshError
from key2mesh.inference.camera_fit import WORLD_TO_CAMERA, default_focal, default_principal
from key2mesh.inference.motion import Motion, MotionSmoothing, build_motion, write_params
from key2mesh.inference.predictor import Key2Mesh
from key2mesh.inference.render import (
    draw_keypoints,
    render_overlay,
    render_side_view,
    track_color,
    wound_outward,
)
from key2mesh.inference.tracking import Tracker
from key2mesh.keypoints.convert import convert_keypoints
from key2mesh.keypoints.sets import num_keypoints
from key2mesh.media.video import prefetched

log = logging.getLogger(__name__)
# Frames narrower or lower than this hold no person to mesh (MediaPipe "finds" one in 8x8 noise);
# they are skipped before detection.
MIN_IMAGE_SIDE = 32
# The demo's stages, as timed in DemoReport.timings: reading frames (both passes), detection,
# tracking, prediction (network, camera fit, smoothing), params + exports, rendering, encoding.
STAGES = ("decode", "detect", "track", "predict", "export", "render", "encode")
# The side view is a sketch of where people stand: rendered at half the panel's resolution and
# scaled up, it costs a quarter of the rasteriser's work (it was half of the render stage)
SIDE_VIEW_RESOLUTION = 0.5


@dataclass
class DemoOptions:
    """What the demo does besides the overlay: ``max_people`` per frame (tracks alive at once),
    ``smoothing`` of the motion, ``focal`` length in pixels (default max(H, W)),
    ``side_view`` panel, ``save_meshes`` (None, "obj" or "ply": one camera-frame mesh per
    person and frame), ``exports`` (bvh, glb, trc, amass: files per track),
    ``max_gap_s`` (a track unseen longer ends), ``stem`` of the output files,
    ``min_track_frames``: in videos, shorter tracks are dropped as spurious detections (when
    at least that many frames are processed), ``search_every_s``: in videos, tracked people
    are searched on their crops, the whole frame (for people coming in, or one lost on their
    crop) at most this often (seconds of video; 0: every frame where someone may be missing;
    see :class:`~key2mesh.media.multi_detect.SearchSchedule`), ``max_height``: frames higher than this are shown (and their meshes rendered) scaled down
    to it, so the output panels are that high (None: the source size), ``inputs``: the input files (no output may be one of them),
    ``world``: the frame of the exports and ``transl_world`` (:mod:`~key2mesh.inference.world`),
    ``origin`` its origin, ``subjects`` the people's height / sex per track
    (:mod:`~key2mesh.inference.subject`),
    ``source``: the input named in the params sidecar, ``threads``: torch's
    intra-op threads while the demo runs (restored afterwards; None: unchanged): one, as the
    rasteriser's many small ops collapse on OpenMP fork/joins when the cores are shared (26 s
    instead of 0.7 s for 6 frames here with a training job on both cores)."""

    max_people: int = 4
    smoothing: MotionSmoothing = MotionSmoothing()
    focal: float | None = None
    side_view: bool = True
    save_meshes: str | None = None
    exports: tuple[str, ...] = ()
    max_gap_s: float = 1.0
    stem: str = "demo"
    min_track_frames: int = 3
    search_every_s: float = 0.25
    max_height: int | None = None
    threads: int | None = 1
    inputs: tuple[Path, ...] = ()  # files the outputs must never overwrite
    world: str = "auto"  # export frame: ground | camera | auto (ground, else camera + warning)
    origin: str = "first-pelvis"  # ground frame's origin: key2mesh.inference.world.ORIGINS
    subjects: dict | None = None  # {track or None (every track): Subject}
    source: str = ""  # what the frames came from, for the params sidecar


@dataclass
class DemoReport:
    frames: int = 0
    written: int = 0
    skipped: dict[str, list[int]] = field(
        default_factory=dict
    )  # reason: video frames (images: positions)
    outputs: list[Path] = field(default_factory=list)
    people_per_frame: list[int] = field(default_factory=list)  # usable people found per frame
    detector_calls: int = 0
    full_searches: int = 0  # frames searched whole + tiles (the others: the tracked crops only)
    dropped_tracks: list[int] = field(default_factory=list)  # too short: spurious detections
    motion: Motion | None = None
    # wall seconds per stage (STAGES), both passes: where the demo's time goes
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    seconds: float = 0.0  # wall time of run_demo (both passes; start-up before it excluded)

    def skip(self, index: int, reason: str) -> None:
        log.warning("frame %d skipped: %s", index, reason)
        self.skipped.setdefault(reason, []).append(index)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to ``timings[stage]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t0

    def timed_frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """``frames`` with the time spent reading (decoding) each one added to ``decode``."""
        it, end = iter(frames), object()
        while True:
            with self.timed("decode"):
                frame = next(it, end)
            if frame is end:
                return
            yield frame

    @property
    def tracks(self) -> list[int]:
        return self.motion.tracks() if self.motion is not None else []


def _unusable(det: tuple[np.ndarray, np.ndarray], model: Key2Mesh) -> str | None:
    """Why the detector's keypoints are no person to mesh (``check_detections``), or None."""
    check = model.check(det[0], det[1])
    if bool(check.usable):
        return None
    why = "; ".join(check.reasons(model.min_keypoints)) or "unusable keypoints"
    return f"the detector's keypoints are unusable ({why})"


def compose_panel(
    image: np.ndarray,
    keypoints: Sequence[np.ndarray],
    confs: Sequence[np.ndarray],
    keypoint_set: str,
    overlay: np.ndarray | None,
    side: np.ndarray | None,
    side_view: bool = True,
) -> np.ndarray:
    """[input + 2D keypoints of every person | mesh overlay | side view], each the frame's
    height (H, W_total, 3); without ``side_view`` the last panel is left out."""
    h, w = image.shape[:2]
    left = image.copy()
    for kp, conf in zip(keypoints, confs):
        draw_keypoints(left, kp, conf, keypoint_set, inplace=True)
    mid = overlay if overlay is not None else image
    parts = [left, mid]
    if side_view:
        parts.append(side if side is not None else np.full((h, max(h // 2, 64), 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)


class ReplayableFrames:
    """A frame source (a callable giving a fresh iterable of frames) read twice by the demo,
    whose first read keeps the frames while they fit in ``budget`` bytes: the second read of a
    short clip replays them instead of decoding again; past the budget nothing is kept (the
    second read decodes again, and memory stays bounded). Wrap the decoder with it, before
    anything that must see both reads (the ``--view`` page)."""

    def __init__(self, source: Callable[[], Iterable[np.ndarray]], budget: float = 2**30):
        self.source, self.budget = source, budget
        self.kept: list[np.ndarray] | None = None  # every frame of a whole first read, or None
        self.reads = 0

    def __call__(self) -> Iterator[np.ndarray]:
        self.reads += 1
        if self.kept is not None:
            kept, self.kept = self.kept[::-1], None
            return (kept.pop() for _ in range(len(kept)))  # each frame let go once shown
        return self._keep(self.source()) if self.reads == 1 else iter(self.source())

    def _keep(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        kept: list[np.ndarray] | None = []
        used = 0
        for frame in frames:
            if kept is not None:
                used += np.asarray(frame).nbytes
                if used <= self.budget:
                    kept.append(frame)
                else:
                    kept = None
            yield frame
        self.kept = kept  # only a read that reached the end is replayed


def _frames(source) -> Callable[[], Iterable[np.ndarray]]:
    """A callable giving a fresh iterable of the frames each time (the demo reads them twice):
    ``source`` is such a callable or a re-iterable sequence; a one-shot iterator is listed."""
    if callable(source):
        return source
    if iter(source) is source:
        source = list(source)
    return lambda: source


def _detect_pass(model, frames, report, options, frame_indices, fps, total, is_video):
    """Pass 1: detection + tracking; returns per-row lists and the image size of each row.
    Unrelated images (not ``is_video``) are not tracked: every detection is its own track (one
    person's shape, ground or smoothing must not mix in another image's)."""
    from key2mesh.media.detectors import no_people
    from key2mesh.media.multi_detect import MultiPersonDetector, VideoSearch

    rows: dict[str, list] = {k: [] for k in ("frame", "time", "track", "kp", "conf", "size")}
    tracker = Tracker(max_people=options.max_people, max_gap_s=options.max_gap_s)
    with MultiPersonDetector(max_people=options.max_people) as detector:
        # unrelated images: every one is searched in full
        every = options.search_every_s if is_video else 0.0
        search = VideoSearch(detector, every, gate=is_video, fallback=not is_video)
        progress = tqdm(
            report.timed_frames(prefetched(frames)),
            desc="detect + track",
            unit="frame",
            total=total,
        )
        for i, frame in enumerate(progress):
            report.frames += 1
            index = frame_indices[i] if frame_indices is not None else i
            t = index / fps
            h, w = np.shape(frame)[:2]
            if min(h, w) < MIN_IMAGE_SIDE:
                report.skip(index, f"image smaller than {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} px")
                report.people_per_frame.append(0)
                continue
            with report.timed("detect"):
                people = search(frame, t, tracker.predicted_boxes(t))
                usable = [
                    p for p in people if _unusable((p.keypoints, p.confidence), model) is None
                ]
            if not usable:
                first = people[0] if people else None
                raw = (first.keypoints, first.confidence) if first else detector.rejected
                report.skip(index, "no person found" if raw is None else _unusable(raw, model))
                report.people_per_frame.append(0)
                tracker.update(t, np.zeros((0, 4)), *no_people(detector.keypoint_set))
                continue
            report.people_per_frame.append(len(usable))
            kp33 = np.stack([p.keypoints for p in usable])
            conf33 = np.stack([p.confidence for p in usable])
            with report.timed("track"):
                if is_video:
                    ids = tracker.update(t, np.stack([p.box for p in usable]), kp33, conf33)
                else:
                    ids = tracker.next_id + np.arange(len(usable))
                    tracker.next_id += len(usable)
            kp, conf = convert_keypoints(
                torch.from_numpy(kp33).float(),
                torch.from_numpy(conf33).float(),
                detector.keypoint_set,
                model.keypoint_set,
            )
            for j in np.flatnonzero(ids >= 0):
                rows["frame"].append(index)
                rows["time"].append(t)
                rows["track"].append(int(ids[j]))
                rows["kp"].append(kp[j].numpy())
                rows["conf"].append(conf[j].numpy())
                rows["size"].append((h, w))
        report.detector_calls = detector.calls
        report.full_searches = detector.full_searches
    return rows


def _drop_short_tracks(rows: dict[str, list], report: DemoReport, min_frames: int) -> None:
    """Remove (in place) the rows of tracks seen in fewer than ``min_frames`` frames."""
    tracks = np.array(rows["track"], dtype=np.int64)
    ids, counts = np.unique(tracks, return_counts=True)
    short = ids[counts < min_frames]
    if not len(short):
        return
    keep = ~np.isin(tracks, short)
    for k in rows:
        rows[k] = [v for v, ok in zip(rows[k], keep) if ok]
    report.dropped_tracks = [int(t) for t in short]
    log.info("dropped %d track(s) seen in fewer than %d frames", len(short), min_frames)


def _in_first_camera(
    kp: np.ndarray, sizes: np.ndarray, focal: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (N, K, 2) px of images of sizes (N, 2) (H, W) as the first image's camera
    (principal point its centre, focal ``focal`` or its default) would see the same rays, and
    each row's scale (N,): that focal over the row's own. The motion is fitted with one
    camera, whose translations for these keypoints are those of each row's own camera (the
    renderer's: its image's centre, its focal); the network's input (the keypoints' box,
    normalised) does not change. Identity for frames of one size (videos)."""
    if not len(sizes):
        return kp, np.ones(0)
    own = np.array([focal or default_focal(h, w) for h, w in sizes], np.float64)
    centre = np.array([default_principal(h, w) for h, w in sizes], np.float64)
    scale = own[0] / own
    moved = (kp - centre[:, None]) * scale[:, None, None] + centre[0]
    return moved.astype(np.float32), scale


def _render_frame(
    model, image, motion: Motion, sel: np.ndarray, options, scale: tuple[float, float] = (1, 1)
) -> tuple:
    """Overlay (all people, one colour per track) and side view of one frame's rows ``sel``;
    ``image`` is the frame shown, ``scale`` (x, y) its size over the source frame's (the camera
    is scaled with it, so only the shown pixels are rendered). Camera-frame vertices third."""
    h, w = image.shape[:2]
    faces = model.faces.cpu()
    rot = torch.from_numpy(motion.rotmats[sel]).to(model.device, model.mesh_body.dtype)
    shape = torch.from_numpy(motion.shape[sel]).to(model.device, model.mesh_body.dtype)
    with torch.no_grad():
        verts = model.mesh_body(rot, shape).vertices.cpu().double()
    r = WORLD_TO_CAMERA.double()
    vcam = verts @ r.T + torch.from_numpy(motion.transl[sel])[:, None]
    ok = torch.isfinite(vcam).all(-1).all(-1)
    nv = verts.shape[1]
    colors = np.array([track_color(t) for t in motion.track_id[sel]])
    overlay = side = None
    if bool(ok.any()):
        idx = torch.nonzero(ok).squeeze(1)
        all_faces = torch.cat([faces + k * nv for k in range(len(idx))])
        face_colors = np.repeat(colors[idx.numpy()], len(faces), axis=0)
        f = float(motion.focal_length[sel][0]) if len(sel) else default_focal(h, w)
        # body meshes are closed: their back faces are hidden anyway (the camera is a rotation
        # of the world frame, so the winding seen from outside is the same)
        cull = wound_outward(verts[0], faces)
        side_job = None
        if options.side_view:  # drawn by a second thread meanwhile (torch releases the GIL)
            world = (vcam[idx] @ r).reshape(-1, 3).float()  # camera → world (y up), people placed
            side_job = _side_worker().submit(
                render_side_view,
                world,
                all_faces,
                size=(h, max(h // 2, 64)),
                color=face_colors,
                cull_back=cull,
                resolution=SIDE_VIEW_RESOLUTION,
            )
        # pixel centres scale as u' = s (u + ½) - ½: the image centre stays the principal point
        overlay = render_overlay(
            image,
            vcam[idx].reshape(-1, 3).float(),
            all_faces,
            (f * scale[0], f * scale[1]),
            color=face_colors,
            cull_back=cull,
        )
        side = side_job.result() if side_job is not None else None
    return overlay, side, vcam


@functools.cache
def _side_worker() -> ThreadPoolExecutor:
    """The thread that draws the side views while the caller draws the overlays."""
    return ThreadPoolExecutor(1, thread_name_prefix="key2mesh-side-view")


def run_demo(
    model: Key2Mesh,
    frames,
    out: Path,
    is_video: bool,
    fps: float = 30.0,
    smooth: bool = False,
    names: list[str] | None = None,
    options: DemoOptions | None = None,
    frame_indices: Sequence[int] | None = None,
    total: int | None = None,
) -> DemoReport:
    """Process RGB frames (a sequence, or a callable returning a fresh iterable: read twice);
    writes ``out`` (an .mp4 for videos, PNGs into the folder ``out`` otherwise) and, in the
    same folder, ``<stem>_params.npz`` + ``.json`` and the exports. ``fps``: frame rate of the
    frame indices (``frame_indices``: the source frame of each frame, default 0, 1, ...)."""
    options = options or DemoOptions()
    if smooth and options.smoothing.mode == "none":
        options.smoothing = MotionSmoothing(mode="one-euro")
    with torch_threads(options.threads):
        return _run_demo(
            model, _frames(frames), out, is_video, fps, names, options, frame_indices, total
        )


def _run_demo(
    model, source, out, is_video, fps, names, options, frame_indices, total
) -> DemoReport:
    """:func:`run_demo` with its options set; ``source()`` gives a fresh iterable of the frames."""
    from key2mesh.media.video import VideoWriter, fit_height, write_image
    from key2mesh.safe_paths import OutputNames, safe_name, stem_path, unique_names

    start = time.perf_counter()
    report = DemoReport()
    names = unique_names(names) if names else None  # plain file names inside ``out``
    out = Path(out)
    out_dir = out.parent if is_video else out
    stem = safe_name(options.stem, "demo")
    claims = OutputNames(options.inputs)
    if options.exports:
        from key2mesh.inference.motion_export import check_formats

        check_formats(options.exports, str(model.checkpoint.body.get("name", "anny")))
    if is_video:
        claims.claim(out, "the video")
    for tail in ("_params.npz", "_params.json"):
        claims.claim(stem_path(out_dir, stem, tail), "the motion table")
    if options.exports:
        from key2mesh.inference.motion_export import export_pattern

        claims.claim_family(out_dir, export_pattern(stem, options.exports), "the exports")
    if options.save_meshes:
        claims.claim(stem_path(out_dir, stem, "_meshes"), "the meshes folder")
    rows = _detect_pass(model, source(), report, options, frame_indices, fps, total, is_video)
    if report.frames == 0:
        raise Key2MeshError("the input holds no frame")
    if is_video:  # unrelated images: every detection stands alone
        _drop_short_tracks(rows, report, min(options.min_track_frames, report.frames))
    sizes = np.array(rows["size"], dtype=np.int64).reshape(-1, 2)
    k = num_keypoints(model.keypoint_set)
    kp = np.array(rows["kp"], dtype=np.float32).reshape(len(sizes), k, 2)
    ref = tuple(int(x) for x in sizes[0]) if len(sizes) else (1, 1)
    kp_ref, scale = _in_first_camera(kp, sizes, options.focal)
    with report.timed("predict"):
        motion = build_motion(
            model,
            np.array(rows["frame"], dtype=np.int64),
            np.array(rows["time"], dtype=np.float64),
            np.array(rows["track"], dtype=np.int64),
            kp_ref,
            np.array(rows["conf"], dtype=np.float32).reshape(len(sizes), k),
            ref,
            fps,
            focal=options.focal,
            smoothing=options.smoothing,
            world=options.world,
            origin=options.origin,
            subjects=options.subjects,
        )
        # each row back in its own image: its pixels, its focal (the fit is the same)
        motion.keypoints2d, motion.focal_length = kp, motion.focal_length / scale
        motion.reprojection_error = motion.reprojection_error / scale
    report.motion = motion
    if len(motion):
        with report.timed("export"):
            report.outputs += write_params(
                motion, stem_path(out_dir, stem, "_params.npz"), source=options.source
            )
            if options.exports:
                from key2mesh.inference.motion_export import export_motion

                report.outputs += export_motion(
                    model, motion, out_dir, stem, options.exports, claims, "the exports"
                )
    # decoding (a thread ahead) and encoding (a thread behind) overlap the rendering
    writer = VideoWriter(out, fps / _stride(frame_indices), background=True) if is_video else None
    failed = True
    mesh_names = None
    meshes_written: list[Path] = []
    try:
        frames = report.timed_frames(prefetched(source()))
        progress = tqdm(frames, desc="render", unit="frame", total=total)
        for i, image in enumerate(progress):
            index = frame_indices[i] if frame_indices is not None else i
            sel = motion.rows_of_frame(index) if min(image.shape[:2]) >= MIN_IMAGE_SIDE else []
            overlay = side = None
            with report.timed("render"):
                shown = fit_height(image, options.max_height)
                scale = np.array(shown.shape[1::-1], np.float64) / image.shape[1::-1]
                if len(sel):
                    overlay, side, vcam = _render_frame(
                        model, shown, motion, sel, options, tuple(scale)
                    )
                panel = compose_panel(
                    shown,
                    [
                        motion.keypoints2d[r]
                        if shown is image
                        else (motion.keypoints2d[r] + 0.5) * scale - 0.5
                        for r in sel
                    ],
                    [motion.confidence[r] for r in sel],
                    model.keypoint_set,
                    overlay,
                    side,
                    options.side_view,
                )
            if len(sel) and options.save_meshes:
                from key2mesh.inference.meshes import write_mesh

                mesh_names = mesh_names or stem_path(out_dir, stem, "_meshes")
                with report.timed("export"):
                    for k, row in enumerate(sel):
                        name = f"frame{index:06d}_track{motion.track_id[row]}.{options.save_meshes}"
                        meshes_written.append(
                            write_mesh(
                                vcam[k].numpy(), model.faces.cpu().numpy(), mesh_names / name
                            )
                        )
            with report.timed("encode"):
                if writer is not None:
                    writer.write(panel)
                else:
                    name = names[i] if names else f"frame_{i:05d}"
                    png = claims.claim(out / f"{name}_key2mesh.png", "an output image")
                    report.outputs.append(write_image(png, panel))
            report.written += 1
        failed = False
    finally:
        if writer is not None:
            with report.timed("encode"):
                writer.close(discard=failed)  # an interrupted run leaves no truncated video
            if not failed:
                report.outputs.append(out)
    if mesh_names is not None:
        from key2mesh.inference.pipeline import MESH_FILES
        from key2mesh.safe_paths import remove_stale

        remove_stale(mesh_names, MESH_FILES, meshes_written)  # an earlier run's other frames
        report.outputs.append(mesh_names)
    report.seconds = time.perf_counter() - start
    return report


def timing_summary(report: DemoReport) -> str:
    """One line: the run's frames per second and seconds per stage (parsed by
    ``benchmarks/demo_speed.py``)."""
    fps = report.frames / report.seconds if report.seconds > 0 else 0.0
    stages = ", ".join(f"{k} {v:.2f}" for k, v in report.timings.items())
    return f"time: {report.seconds:.2f} s, {fps:.2f} frames/s ({stages} s)"


def _stride(frame_indices: Sequence[int] | None) -> int:
    """Frame step of the processed frames (1 when unknown)."""
    if frame_indices is None or len(frame_indices) < 2:
        return 1
    return max(1, int(frame_indices[1]) - int(frame_indices[0]))
