"""Motion in the world (#22): the export frame, the shared clock and the subject's own body,
measured on the sports2d demo video and on the pose2sim views.

1. ``key2mesh demo sports2d --frames 0:120:4 --export bvh,glb,trc --out OUT`` (default flags;
   ``--reuse`` keeps OUT's files when it already holds them), then from its params, sidecar
   and TRCs: the ground's tilt from the camera's -y, the plane fit's residual scale, the
   camera height, each person's level, the stance ankles' plane per track (angle from
   horizontal, before / after the contact root correction), the late person's first TRC time
   and TRC ankle heights, the TRC's markers, the foot skate before / after the root correction;
   the TRC ankle heights without the no-penetration guard (the demo's motion rebuilt from its
   params with ``guard=False``) and the rows the guard lifted; the combined ``_all.glb`` in
   ``<model-viewer>`` at time 0 (optional: ``chromium-headless-shell`` and
   ``KEY2MESH_MODEL_VIEWER_JS``, see tests/helpers/browser_shot.py): the share of the canvas in
   each track's colour.
2. Bone-length standard deviation per track (SMPL-24 joints, mean over the 23 bones) with
   per-frame shapes (``build_motion(track_shape=False)``) and with one shape per track, from the
   same keypoints (the params' ``keypoints2d``); the spread of the per-frame statures.
3. The pose2sim views (``key2mesh data pose2sim``: development and test parts, triangulated 3D):
   MPJPE / PA-MPJPE with per-frame shapes, with one shape for the subject (the median), and with
   the subject's height given (measured on the triangulated skeleton: the best scale of the
   model's rest bone lengths onto the triangulated ones, times the model's stature); 95 %
   bootstrap intervals over instants, paired against per-frame shapes.
4. OpenSim (when the optional ``opensim`` package is installed): each track's TRC scaled and
   solved by inverse kinematics with Pose2Sim's COCO_17 model, RMS marker error with
   upstream's marker set and with its RHip corrected
   (:mod:`key2mesh.inference.motion_export.opensim_setup`).

    .venv/bin/python benchmarks/world_frame.py [--out runs/world_frame] [--reuse]
        [--bench cache/pose2sim_benchmark.npz] [--checkpoint anny-coco17-ensemble]

Writes benchmarks/results/world_frame.md and world_frame_result.txt (last line ``RESULT ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEMO = ["demo", "sports2d", "--frames", "0:120:4", "--export", "bvh,glb,trc"]
# COCO-17 segments: upper arms, forearms, thighs, shanks, shoulders, hips, trunk sides
SEGMENTS = [(5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6),
            (11, 12), (5, 11), (6, 12)]  # fmt: skip


def angle_deg(a, b) -> float:
    c = np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)
    return float(np.degrees(np.arccos(np.clip(abs(c), -1, 1))))


def walk_slope_deg(points: np.ndarray) -> float:
    """Slope from horizontal (degrees) of points (M, 3) (y up) along their main horizontal
    direction: least squares of the height on the position along it. (A walker's stance ankles
    lie near one line; the tilt across it is left open by them, so a full plane is ill-posed.)"""
    if len(points) < 3:
        return float("nan")
    q = points[:, [0, 2]] - points[:, [0, 2]].mean(0)
    s = q @ np.linalg.svd(q, full_matrices=False)[2][0]
    a = np.polyfit(s, points[:, 1], 1)[0]
    return float(np.degrees(np.arctan(abs(a))))


def run_demo(out: Path, reuse: bool) -> None:
    if reuse and (out / "sports2d_params.npz").is_file():
        return
    cli = str(ROOT / ".venv" / "bin" / "key2mesh")
    subprocess.run([cli, *DEMO, "--out", str(out)], check=True)


def trc_ankles_cm(path: Path) -> np.ndarray:
    """(T, 2) left / right ankle heights (cm) of a TRC file, and its times (T,)."""
    from key2mesh.inference.motion_export.trc import read_trc

    names, times, xyz, header = read_trc(path)
    scale = 0.1 if header.get("Units", "mm") == "mm" else 100.0
    return xyz[:, [names.index("LAnkle"), names.index("RAnkle")], 1] * scale, times


@torch.no_grad()
def unguarded_ankles(out: Path, checkpoint: str) -> dict:
    """{track: (T, 2) TRC ankle heights, cm} of the demo's motion rebuilt from its params
    without the no-penetration guard (``ground_world(guard=False)``), and the largest TRC
    difference of the rebuilt guarded motion from the demo's files (a check, cm)."""
    from key2mesh.inference.motion import build_motion
    from key2mesh.inference.motion_export import export_motion
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.inference.world import estimate_world

    model = Key2Mesh.from_pretrained(checkpoint, device="cpu")
    p = np.load(out / "sports2d_params.npz")
    motion = build_motion(
        model, p["frame_index"], p["time_s"], p["track_id"], p["keypoints2d"][..., :2],
        p["keypoints2d"][..., 2], tuple(p["image_size"]), float(p["fps"]), world="ground",
    )  # fmt: skip
    res, check = {}, 0.0
    for name, guard in (("guarded", True), ("unguarded", False)):
        motion.world = estimate_world(model, motion, "ground", guard=guard)
        for path in export_motion(model, motion, out / name, "sports2d", ["trc"]):
            t = path.stem.removeprefix("sports2d_track")
            ankles, _ = trc_ankles_cm(path)
            if guard:
                demo, _ = trc_ankles_cm(out / path.name)
                check = max(check, float(np.abs(ankles - demo).max()))
            else:
                res[t] = ankles
    return {"tracks": res, "rebuild_diff_cm": check}


def browser_numbers(out: Path) -> dict:
    """{track: share of the canvas} of ``sports2d_all.glb`` in ``<model-viewer>`` at time 0
    (pixels nearest each track's colour); {} when the browser or the bundle is missing."""
    import shutil

    js = os.environ.get("KEY2MESH_MODEL_VIEWER_JS")
    if not (shutil.which("chromium-headless-shell") and js and Path(js).is_file()):
        return {}
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.browser_shot import model_viewer_shot, track_shares
    from key2mesh.inference.render import track_color

    meta = json.loads((out / "sports2d_params.json").read_text())
    tracks = sorted(int(t) for t in meta["tracks"])
    png = model_viewer_shot(out / "sports2d_all.glb", Path(js), out / "browser", time_s=0.0)
    shares = track_shares(png, [track_color(t) for t in tracks])
    return {str(t): shares[k] for k, t in enumerate(tracks)}


def scene_numbers(out: Path) -> dict:
    """Numbers of the export frame from the demo's params, sidecar and TRCs."""
    from key2mesh.inference.motion_export.trc import read_trc

    meta = json.loads((out / "sports2d_params.json").read_text())
    p = np.load(out / "sports2d_params.npz")
    w = meta["world"]
    r, o = np.asarray(p["world_rotation"]), np.asarray(p["world_origin"])
    track, contact = p["track_id"], p["foot_contact"]
    ankles = (p["joints3d"][:, [7, 8]] - o) @ r.T  # world frame, before the root correction
    shift = p["transl_world"] - (p["transl"] - o) @ r.T  # the kept root correction
    res = {
        "tilt_deg": angle_deg(w["up_in_camera"], [0.0, -1.0, 0.0]),
        "plane_residual_cm": 100 * w["plane_residual_m"],
        "contact_points": w["contact_points"],
        "camera_height_m": w["camera_height_m"],
        "skate_before_mm": w["foot_skate_mm"]["before"],
        "skate_after_mm": w["foot_skate_mm"]["after_root_correction"],
        "correction_kept": w["foot_skate_mm"]["correction_kept"],
        "guard": w.get("ground_guard", {}),
        "tracks": {},
    }
    late = max(meta["tracks"], key=lambda t: meta["tracks"][t]["start_s"])
    for t, info in meta["tracks"].items():
        sel = track == int(t)
        pts = ankles[sel][contact[sel]]
        after = (ankles[sel] + shift[sel, None])[contact[sel]]
        names, times, xyz, header = read_trc(out / f"sports2d_track{t}.trc")
        scale = 0.001 if header.get("Units", "mm") == "mm" else 1.0
        trc_ankles = xyz[:, [names.index("LAnkle"), names.index("RAnkle")], 1] * scale
        at = np.searchsorted(times, p["time_s"][sel] - 1e-6)  # the TRC sample of each row
        stance = trc_ankles[at][contact[sel]]  # (the TRC is the track's regular grid)
        res["tracks"][t] = {
            "start_s": info["start_s"],
            "rows": info["rows"],
            "height_m": info.get("height_m", float("nan")),
            "level_m": w["levels_m"][t],
            "ankle_to_sole_m": w["ankle_to_sole_m"][t],
            "contacts": int(contact[sel].sum()),
            "stance_plane_deg": walk_slope_deg(pts),
            "stance_plane_after_deg": walk_slope_deg(after),
            "trc_stance_ankle_cm": 100 * np.quantile(stance, [0, 0.5, 1]),
            "trc_first_time_s": float(times[0]),
            "trc_markers": names,
            "trc_units": header.get("Units", "?"),
            "trc_ankle_cm": 100
            * np.array([trc_ankles.min(), np.median(trc_ankles), trc_ankles.max()]),
        }
    res["late"] = late
    return res


@torch.no_grad()
def bone_numbers(out: Path, checkpoint: str) -> dict:
    """Per-track bone-length std with per-frame shapes and with one shape per track."""
    from key2mesh.inference.motion import build_motion
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.inference.subject import rest_height
    from key2mesh.keypoints.sets import SMPL24_PARENTS

    model = Key2Mesh.from_pretrained(checkpoint, device="cpu")
    p = np.load(out / "sports2d_params.npz")
    args = (model, p["frame_index"], p["time_s"], p["track_id"], p["keypoints2d"][..., :2],
            p["keypoints2d"][..., 2], tuple(p["image_size"]), float(p["fps"]))  # fmt: skip
    parents = np.asarray(SMPL24_PARENTS)
    res = {}
    for name, one in (("per_frame", False), ("per_track", True)):
        m = build_motion(*args, focal=float(p["focal_length"][0]), track_shape=one, world="camera")
        bones = np.linalg.norm(m.joints3d[:, 1:] - m.joints3d[:, parents[1:]], axis=-1)
        heights = rest_height(model.mesh_body, torch.from_numpy(m.shape).double()).numpy()
        for t in m.tracks():
            sel = m.track_id == t
            res.setdefault(str(t), {})[name] = {
                "bone_std_mm": float(1000 * bones[sel].std(0).mean()),
                "stature_std_cm": float(100 * heights[sel].std()),
                "stature_m": float(np.median(heights[sel])),
            }
    return res


def bench_parts(bench: str) -> dict[str, Path]:
    stem = Path(bench)
    found = {p: stem.with_name(f"{stem.stem}_{p}.npz") for p in ("dev", "test")}
    missing = [str(f) for f in found.values() if not f.is_file()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run `key2mesh data pose2sim` first")
    return found


@torch.no_grad()
def skeleton_height(model, shape: np.ndarray, joints: np.ndarray) -> float:
    """Stature of the subject from triangulated COCO-17 joints (N, 17, 3): the least-squares
    scale of the rest body's (``shape``) segment lengths onto the median triangulated ones,
    times the rest body's stature."""
    from key2mesh.inference.subject import rest_height

    body = model.body
    s = torch.as_tensor(shape, dtype=body.dtype).reshape(1, -1)
    rot = torch.eye(3, dtype=body.dtype).expand(1, 24, 3, 3)
    kp = body.regress(body(rot, s).vertices, "coco17")[0].double().numpy()
    a, b = np.array(SEGMENTS).T
    model_len = np.linalg.norm(kp[a] - kp[b], axis=-1)
    tri_len = np.median(np.linalg.norm(joints[:, a] - joints[:, b], axis=-1), axis=0)
    scale = float(tri_len @ model_len / (model_len @ model_len))
    return scale * float(rest_height(model.mesh_body, s.double())[0])


@torch.no_grad()
def pose2sim_numbers(bench: str, checkpoint: str) -> dict:
    from key2mesh.data.benchmark import load_benchmark_file
    from key2mesh.eval.benchmarks import ground_truth, score_parameters
    from key2mesh.eval.intervals import bootstrap_mean, paired_difference
    from key2mesh.eval.metrics import get_protocol
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.inference.subject import Subject, fit_subject, rest_height

    model = Key2Mesh.from_pretrained(checkpoint, device="cpu")
    protocol = get_protocol("key2mesh")
    res = {}
    for part, path in bench_parts(bench).items():
        b = load_benchmark_file(path)
        gj, gset, _ = ground_truth(b, protocol, None, model.device)
        pred = model.predict(b.keypoints2d, b.confidence, keypoint_set=b.keypoint_set, mesh=False)
        keep = pred.valid.cpu().numpy()
        shape = pred.shape.cpu().double().numpy()
        median = np.median(shape[keep], axis=0)
        height = skeleton_height(model, median, b.joints3d.double().numpy()[keep])
        given = fit_subject(model.mesh_body, median, Subject(height))
        variants = {
            "per_frame": shape,
            "one_shape": np.repeat(median[None], len(shape), 0),
            "height_given": np.repeat(given[None].astype(np.float64), len(shape), 0),
        }
        clusters = b.instant_ids()[keep]
        part_res = {
            "samples": int(keep.sum()),
            "subject_height_m": height,
            "median_height_m": float(
                rest_height(model.mesh_body, torch.from_numpy(median[None]))[0]
            ),
        }
        errs = {}
        for name, s in variants.items():
            e = score_parameters(
                model.body, pred.rotmats, torch.from_numpy(s).to(pred.rotmats), gj, gset, None,
                protocol,
            )  # fmt: skip
            errs[name] = {k: v.numpy()[keep] for k, v in e.items()}
            part_res[name] = {
                k: bootstrap_mean(errs[name][k], clusters).__dict__ for k in ("mpjpe", "pa_mpjpe")
            }
            if name != "per_frame":
                part_res[name]["delta"] = {
                    k: paired_difference(errs[name][k], errs["per_frame"][k], clusters).__dict__
                    for k in ("mpjpe", "pa_mpjpe")
                }
        res[part] = part_res
    return res


def opensim_numbers(out: Path) -> dict:
    """{track: {"upstream" / "corrected": mean (max) RMS marker error mm}}; {} without opensim."""
    try:
        import opensim  # noqa: F401
    except ImportError:
        return {}
    from key2mesh.inference.motion_export.opensim_setup import run_ik

    res = {}
    for trc in sorted(out.glob("sports2d_track*.trc")):
        t = trc.stem.removeprefix("sports2d_track")
        for name, correct in (("upstream", False), ("corrected", True)):
            r = run_ik(trc, out / "opensim" / f"{trc.stem}_{name}", correct=correct)
            res.setdefault(t, {})[name] = (1000 * r["rms_m"].mean(), 1000 * r["rms_m"].max())
    return res


def ci(i: dict) -> str:
    return f"{i['mean']:.1f} [{i['low']:.1f}, {i['high']:.1f}]"


def write(
    scene: dict, bones: dict, p2s: dict, ik: dict, command: str, off: dict, shot: dict
) -> None:
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    late = scene["late"]
    lines = [
        "# Motion in the world (#22): export frame, clock, one body per track",
        "",
        f"Machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPU(s), "
        f"torch {torch.__version__}; commit {commit}; command: `{command}`.",
        "",
        f"## sports2d, `key2mesh {' '.join(DEMO)}` (default flags)",
        "",
        f"- ground normal {scene['tilt_deg']:.1f}° from the camera's −y; camera "
        f"{scene['camera_height_m']:.2f} m above the ground; plane fit residual scale "
        f"{scene['plane_residual_cm']:.1f} cm over {scene['contact_points']} contact points",
        f"- foot skate (contact-foot slide): {scene['skate_before_mm']:.1f} mm per sample before, "
        f"{scene['skate_after_mm']:.1f} mm after the contact root correction "
        f"({'kept' if scene['correction_kept'] else 'not kept'})",
        "",
        "| track | first time (s) | rows | stature (m) | level (m) | ankle-to-sole (cm) | contacts "
        "| stance-ankle slope along the walk, before / after correction (°) | TRC first time (s) "
        "| TRC ankle height min / median / max (cm) | TRC stance-ankle height min / median / "
        "max (cm) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t, r in scene["tracks"].items():
        lo, med, hi = r["trc_ankle_cm"]
        lines.append(
            f"| {t}{' (late)' if t == late else ''} | {r['start_s']:.4f} | {r['rows']} | "
            f"{r['height_m']:.2f} | {r['level_m']:.2f} | {100 * r['ankle_to_sole_m']:.1f} | "
            f"{r['contacts']} | {r['stance_plane_deg']:.1f} / {r['stance_plane_after_deg']:.1f} | "
            f"{r['trc_first_time_s']:.4f} | {lo:.1f} / {med:.1f} / {hi:.1f} | "
            + " / ".join(f"{v:.1f}" for v in r["trc_stance_ankle_cm"])
            + " |"
        )
    t0 = next(iter(scene["tracks"].values()))
    g = scene["guard"]
    lines += [
        "",
        f"TRC markers ({t0['trc_units']}): {', '.join(t0['trc_markers'])}.",
        "",
        "### No-penetration guard (a row's lowest ankle lifted onto its level + ankle-to-sole)",
        "",
        f"Rows lifted: {g.get('rows_lifted', 0)} (more than 1 µm), the largest lift "
        f"{100 * g.get('max_lift_m', 0.0):.1f} cm. Without the guard: the demo's motion rebuilt "
        f"from its params with `guard=False` (the rebuilt guarded TRCs differ from the demo's by "
        f"{off['rebuild_diff_cm']:.2g} cm at most). Swing-phase heights above 20 cm are left "
        "as they are.",
        "",
        "| track | TRC ankle height min / median / max (cm), no guard | with the guard |",
        "|---|---|---|",
    ]
    for t, r in scene["tracks"].items():
        a = off["tracks"][t]
        lines.append(
            f"| {t}{' (late)' if t == late else ''} | {a.min():.1f} / {np.median(a):.1f} / "
            f"{a.max():.1f} | " + " / ".join(f"{v:.1f}" for v in r["trc_ankle_cm"]) + " |"
        )
    lines += ["", "### `sports2d_all.glb` in `<model-viewer>` 4.4.0 at time 0", ""]
    if shot:
        lines.append(
            "Share of the 640 × 480 canvas drawn in each track's colour (headless Chromium, "
            "software WebGL): "
            + ", ".join(f"track {t} {100 * v:.2f} %" for t, v in shot.items())
            + "."
        )
    else:
        lines.append("Not run: no chromium-headless-shell or KEY2MESH_MODEL_VIEWER_JS.")
    lines += [
        "",
        "## One shape per track (same keypoints; SMPL-24 bone lengths, mean std over 23 bones)",
        "",
        "| track | bone-length std, per-frame shapes (mm) | one shape per track (mm) "
        "| stature std, per-frame shapes (cm) | stature (m) |",
        "|---|---|---|---|---|",
    ]
    for t, r in bones.items():
        lines.append(
            f"| {t} | {r['per_frame']['bone_std_mm']:.1f} | {r['per_track']['bone_std_mm']:.1f} | "
            f"{r['per_frame']['stature_std_cm']:.1f} | {r['per_track']['stature_m']:.2f} |"
        )
    lines += [
        "",
        "## pose2sim views: the subject's height given (mm; 95 % intervals over instants)",
        "",
        "Height from the triangulated skeleton (the rest body's COCO-17 segment lengths scaled "
        "onto the median triangulated ones). Δ: paired against per-frame shapes.",
        "",
        "| part | samples | height given (m) | median body (m) | shapes | MPJPE | PA-MPJPE "
        "| Δ MPJPE | Δ PA-MPJPE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for part, r in p2s.items():
        for name in ("per_frame", "one_shape", "height_given"):
            d = r[name].get("delta")
            lines.append(
                f"| {part} | {r['samples']} | {r['subject_height_m']:.3f} | "
                f"{r['median_height_m']:.3f} | {name} | {ci(r[name]['mpjpe'])} | "
                f"{ci(r[name]['pa_mpjpe'])} | {ci(d['mpjpe']) if d else '-'} | "
                f"{ci(d['pa_mpjpe']) if d else '-'} |"
            )
    lines += ["", "## OpenSim IK with Pose2Sim's COCO_17 model (scaled on each TRC)", ""]
    if ik:
        lines += [
            "RMS marker error per frame, mean (max), mm; upstream RHip vs corrected.",
            "",
            "| track | upstream marker set | RHip corrected |",
            "|---|---|---|",
        ]
        for t, r in ik.items():
            u, c = r["upstream"], r["corrected"]
            lines.append(f"| {t} | {u[0]:.1f} ({u[1]:.1f}) | {c[0]:.1f} ({c[1]:.1f}) |")
    else:
        lines.append("Not run: the optional opensim package is not installed.")
    woman = scene["tracks"][late]
    kv = {
        "tilt_deg": scene["tilt_deg"],
        "plane_residual_cm": scene["plane_residual_cm"],
        "camera_height_m": scene["camera_height_m"],
        **{f"level_track{t}_m": r["level_m"] for t, r in scene["tracks"].items()},
        **{f"stance_slope_track{t}_deg": r["stance_plane_deg"] for t, r in scene["tracks"].items()},
        **{
            f"stance_slope_after_track{t}_deg": r["stance_plane_after_deg"]
            for t, r in scene["tracks"].items()
        },
        "late_track": int(late),
        "late_first_trc_time_s": woman["trc_first_time_s"],
        "late_trc_ankle_min_cm": woman["trc_ankle_cm"][0],
        "late_trc_ankle_median_cm": woman["trc_ankle_cm"][1],
        "late_trc_ankle_max_cm": woman["trc_ankle_cm"][2],
        "late_trc_ankle_min_noguard_cm": float(off["tracks"][late].min()),
        "late_trc_ankle_max_noguard_cm": float(off["tracks"][late].max()),
        "guard_rows_lifted": int(scene["guard"].get("rows_lifted", 0)),
        "guard_max_lift_cm": 100 * float(scene["guard"].get("max_lift_m", 0.0)),
        **{f"glb_all_t0_track{t}_canvas_pct": 100 * v for t, v in shot.items()},
        "late_trc_stance_ankle_min_cm": woman["trc_stance_ankle_cm"][0],
        "late_trc_stance_ankle_max_cm": woman["trc_stance_ankle_cm"][2],
        "skate_before_mm": scene["skate_before_mm"],
        "skate_after_mm": scene["skate_after_mm"],
        **{
            f"bone_std_track{t}_per_frame_mm": r["per_frame"]["bone_std_mm"]
            for t, r in bones.items()
        },
        **{
            f"bone_std_track{t}_per_track_mm": r["per_track"]["bone_std_mm"]
            for t, r in bones.items()
        },
    }
    for part, r in p2s.items():
        for name in ("per_frame", "one_shape", "height_given"):
            kv[f"p2s_{part}_{name}_mpjpe"] = r[name]["mpjpe"]["mean"]
            kv[f"p2s_{part}_{name}_pa_mpjpe"] = r[name]["pa_mpjpe"]["mean"]
        kv[f"p2s_{part}_height_m"] = r["subject_height_m"]
    for t, r in ik.items():
        kv[f"ik_rms_track{t}_upstream_mm"] = float(r["upstream"][0])
        kv[f"ik_rms_track{t}_corrected_mm"] = float(r["corrected"][0])
    result = "RESULT " + " ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in kv.items()
    )
    lines += ["", result, ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "world_frame.md").write_text("\n".join(lines))
    (RESULTS / "world_frame_result.txt").write_text(result + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/world_frame", help="the demo's output folder")
    ap.add_argument("--reuse", action="store_true", help="reuse OUT's demo files if present")
    ap.add_argument("--bench", default="cache/pose2sim_benchmark.npz")
    ap.add_argument("--checkpoint", default="anny-coco17-ensemble", help="the demo's default")
    a = ap.parse_args()
    os.environ.setdefault("ANNY_CACHE_DIR", str(ROOT / ".cache" / "anny"))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    out = Path(a.out)
    run_demo(out, a.reuse)
    command = "python benchmarks/world_frame.py " + " ".join(sys.argv[1:])
    ik = opensim_numbers(out)
    bones = bone_numbers(out, a.checkpoint)
    off = unguarded_ankles(out, a.checkpoint)
    shot = browser_numbers(out)
    p2s = pose2sim_numbers(a.bench, a.checkpoint)
    write(scene_numbers(out), bones, p2s, ik, command, off, shot)


if __name__ == "__main__":
    main()
