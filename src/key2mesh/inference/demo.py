"""The demo pipeline: frames → MediaPipe BlazePose → Key2Mesh → camera fit → overlay + side view."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from key2mesh.errors import Key2MeshError
from key2mesh.inference.camera_fit import default_focal, fit_camera
from key2mesh.inference.predictor import Key2Mesh
from key2mesh.inference.render import draw_keypoints, render_overlay, render_side_view
from key2mesh.keypoints.convert import convert_keypoints

log = logging.getLogger(__name__)
# Frames narrower or lower than this hold no person to mesh (MediaPipe "finds" one in 8x8 noise);
# they are skipped before detection.
MIN_IMAGE_SIDE = 32


@dataclass
class DemoReport:
    frames: int = 0
    written: int = 0
    skipped: dict[str, list[int]] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)

    def skip(self, index: int, reason: str) -> None:
        log.warning("frame %d skipped: %s", index, reason)
        self.skipped.setdefault(reason, []).append(index)


def _unusable(det: tuple[np.ndarray, np.ndarray], model: Key2Mesh) -> str | None:
    """Why the detector's keypoints are no person to mesh (``check_detections``), or None."""
    check = model.check(det[0], det[1])
    if bool(check.usable):
        return None
    why = "; ".join(check.reasons(model.min_keypoints)) or "unusable keypoints"
    return f"the detector's keypoints are unusable ({why})"


def compose_panel(
    image: np.ndarray,
    keypoints: np.ndarray | None,
    conf: np.ndarray | None,
    keypoint_set: str,
    overlay: np.ndarray | None,
    side: np.ndarray | None,
) -> np.ndarray:
    """[input + 2D keypoints | mesh overlay | side view], each the frame's height (H, W_total, 3)."""
    h, w = image.shape[:2]
    left = draw_keypoints(image, keypoints, conf, keypoint_set) if keypoints is not None else image
    mid = overlay if overlay is not None else image
    right = side if side is not None else np.full((h, h // 2, 3), 255, np.uint8)
    return np.concatenate([left, mid, right], axis=1)


def run_demo(
    model: Key2Mesh,
    frames,
    out: Path,
    is_video: bool,
    fps: float = 30.0,
    smooth: bool = False,
    names: list[str] | None = None,
) -> DemoReport:
    """Process an iterable of RGB frames; writes ``out`` (an .mp4 for videos, PNGs otherwise)."""
    from key2mesh.media.detect import PoseDetector
    from key2mesh.media.video import VideoWriter, write_image
    from key2mesh.safe_paths import unique_names

    report = DemoReport()
    names = unique_names(names) if names else None  # plain file names inside ``out``
    images, kps, confs = [], [], []
    with PoseDetector(video=is_video) as detector:
        for i, frame in enumerate(tqdm(frames, desc="detect", unit="frame")):
            report.frames += 1
            images.append(frame)
            if min(np.shape(frame)[:2]) < MIN_IMAGE_SIDE:
                det, reason = None, f"image smaller than {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} px"
            else:
                det = detector(frame)
                reason = "no person found" if det is None else _unusable(det, model)
            if reason:
                report.skip(i, reason)
                kps.append(None)
                confs.append(None)
                continue
            kp, conf = convert_keypoints(
                torch.from_numpy(det[0]).float(),
                torch.from_numpy(det[1]).float(),
                "mediapipe33",
                model.keypoint_set,
            )
            kps.append(kp.numpy())
            confs.append(conf.numpy())
    if report.frames == 0:
        raise Key2MeshError("the input holds no frame")
    ok = [i for i, k in enumerate(kps) if k is not None]
    rot = shape = None
    if ok:
        pred = model.predict(
            np.stack([kps[i] for i in ok]), np.stack([confs[i] for i in ok]), mesh=False
        )
        rot, shape = pred.rotmats.cpu(), pred.shape.cpu()
        for j, i in enumerate(ok):
            if not bool(pred.valid[j]):
                report.skip(i, f"fewer than {model.min_keypoints} keypoints, or all on one spot")
        if smooth and len(ok) > 2:
            from key2mesh.inference.smoothing import DEMO_SMOOTHING, smooth_parameters

            rot, shape = smooth_parameters(rot, shape, fps, DEMO_SMOOTHING)
    skipped = {i for idx in report.skipped.values() for i in idx}
    good = {i: j for j, i in enumerate(ok) if i not in skipped}
    writer = VideoWriter(out, fps) if is_video else None
    faces = model.faces.cpu()
    failed = True
    try:
        for i, image in enumerate(tqdm(images, desc="render", unit="frame")):
            overlay = side = None
            if i in good:
                j = good[i]
                with torch.no_grad():
                    o = model.mesh_body(
                        rot[j : j + 1].to(model.device), shape[j : j + 1].to(model.device)
                    )
                verts = o.vertices[0].cpu()
                kp3d = model.mesh_body.regress(o.vertices, model.keypoint_set)[0].cpu()
                h, w = image.shape[:2]
                cam = fit_camera(
                    kp3d, torch.from_numpy(kps[i]), torch.from_numpy(confs[i]), image_size=(h, w)
                )
                if bool(cam.valid[0]):
                    vcam = verts @ cam.rotation.T.to(verts) + cam.translation[0].to(verts)
                    overlay = render_overlay(image, vcam, faces, default_focal(h, w))
                side = render_side_view(verts, faces, size=(h, max(h // 2, 64)))
            panel = compose_panel(image, kps[i], confs[i], model.keypoint_set, overlay, side)
            if writer is not None:
                writer.write(panel)
            else:
                name = names[i] if names else f"frame_{i:05d}"
                path = write_image(out / f"{name}_key2mesh.png", panel)
                report.outputs.append(path)
            report.written += 1
        failed = False
    finally:
        if writer is not None:
            writer.close(discard=failed)  # an interrupted run leaves no truncated video
            if not failed:
                report.outputs.append(out)
    return report
