"""Adaptation you can trust: label-free adaptation on real footage, development vs test parts.

The pose2sim real benchmark (``key2mesh data pose2sim``: MediaPipe in 4 calibrated views, 3D
triangulated) is split by whole instants into a development part (first half of the clip) and a
test part (second half). Every choice (the selection rule, the default model) is made on the
development part and on held-out MoCap; the test part is reported. Adaptation is transductive:
each part is adapted to its own unlabelled detections; its labels are only logged (``--monitor``
style, never used for selection) and scored afterwards.

Runs (``adapt`` through the library, 300 steps, checked every 25):
  single    the defaults (full L_DA, label-free "guarded" selection), one view at a time
  mv        --multiview defaults (full L_DA + L_mv, views grouped by instant)
  body25    anny-body25 on the same MediaPipe detections (another keypoint mapping), single view
  paper     a model pre-trained with the paper's recipe only (clean 2D + the paper's jitter and
            occlusion, no detector noise, no second stage; 3,000 steps, trained here when missing
            into runs/shift/paper_recipe): the domain gap the paper adapts across, single view
and a synthetic check of L_mv's scale: 4 random viewpoints of held-out CMU poses with known ground
truth, L2D^t + L_mv in metres (as before) vs scale-free (now), 150 steps.

For each run the table gives the model each rule would keep: step 0 (the source), the paper's
label-free rule on the target alone ("target": the lowest held-out re-projection, or the views'
disagreement with L_mv), the guarded default, the last step and the oracle (labels); cells are
PA-MPJPE / MPJPE mm; intervals are 95 % bootstrap over instants, paired against step 0.

    .venv/bin/python benchmarks/adaptation.py [--cache cache/mocap_all.npz]
        [--bench cache/pose2sim_benchmark.npz] [--steps 300] [--out runs/adaptation] [--threads 2]

Writes benchmarks/results/adaptation.md and adaptation_result.txt (the ``RESULT key=value ...``
line, also printed last).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # compare.py's measures

RUNS = {  # name: (source checkpoint, multiview)
    "single": ("anny-coco17", False),
    "mv": ("anny-coco17", True),
    "body25": ("anny-body25", False),
    "paper": ("runs/shift/paper_recipe/best.pt", False),
}
# the paper-recipe model of the "paper" run: `key2mesh pretrain` options
PAPER_RECIPE = [
    "--keypoint-set", "coco17", "--hidden", "1024", "--steps", "3000", "--lr-step", "300",
    "--val-every", "1000", "--seed", "0", "--config", "configs/paper_recipe.yaml",
]  # fmt: skip
PARTS = ("dev", "test")
# synthetic shifts (development data: held-out CMU subjects, labels known): name → (source,
# noise profile, synthesizer overrides)
SHIFTS = {
    "close": ("anny-coco17", "detector", {"distance_range": [2.0, 3.0]}),  # a close camera
    "noise": ("anny-coco17", "strong", {}),  # a noisier detector than the model was trained on
}


def parts(bench: str) -> dict[str, Path]:
    """The development and test files ``key2mesh data pose2sim`` writes beside ``bench``."""
    stem = Path(bench)
    found = {p: stem.with_name(f"{stem.stem}_{p}.npz") for p in PARTS}
    if not all(f.is_file() for f in found.values()):
        from key2mesh.data.benchmark import load_benchmark_file, save_benchmark

        for part, split in zip(PARTS, load_benchmark_file(bench).split_by_instant(0.5)):
            save_benchmark(split, found[part])
    return found


def run(out: Path, source: str, target_of, a, monitor_of=None, **options) -> Path:
    """Adapt shipped model ``source`` to ``target_of(checkpoint)`` (a TargetSet) into ``out``,
    checked every 25 steps, labels of ``monitor_of(checkpoint, target)`` (default: the target's
    own) only logged; ``options``: AdaptConfig fields. Skipped when ``out`` holds a finished run."""
    from key2mesh.model.checkpoint import load_checkpoint, resolve_checkpoint
    from key2mesh.train.adapt import AdaptConfig, run_adapt

    if (out / "summary.json").is_file() and not a.rerun:
        return out
    src = str(resolve_checkpoint(source))
    ck = load_checkpoint(src)
    target = target_of(ck)
    monitor = target if monitor_of is None else monitor_of(ck, target)
    cfg = AdaptConfig(
        source=src, cache=a.cache, out_dir=str(out), select_every=25, threads=a.threads, **options
    )
    run_adapt(cfg, target, monitor=monitor, progress=False)
    return out


def ensure_source(source: str, a) -> None:
    """Train the "paper" run's source model with ``key2mesh pretrain`` when it is missing."""
    if source != RUNS["paper"][0] or Path(source).is_file():
        return
    import subprocess

    out = Path(source).parent
    cmd = [sys.executable, "-m", "key2mesh.cli", "pretrain", "--cache", a.cache, "--out", str(out)]
    subprocess.run([*cmd, *PAPER_RECIPE, "--threads", str(a.threads), "--resume"], check=True)


def adapt_run(name: str, source: str, multiview: bool, part: Path, a) -> Path:
    """Adapt ``source`` to the unlabelled detections of ``part``; labels only logged."""
    ensure_source(source, a)
    from key2mesh.commands.adapt import load_targets
    from key2mesh.train.adapt import ABLATIONS, MULTIVIEW_LOSSES, AdaptWeights, benchmark_target

    return run(
        Path(a.out) / name,
        source,
        lambda ck: load_targets([str(part)], ck, a.cache, multiview=multiview),
        a,
        lambda ck, _: benchmark_target(str(part), ck),
        steps=a.steps,
        weights=ABLATIONS[MULTIVIEW_LOSSES] if multiview else AdaptWeights(),  # adapt's defaults
    )


def wmv_run(weight: float, part: Path, a) -> Path:
    """The --multiview default (L2D^t + L_mv) with another w_mv, on the development part."""
    from key2mesh.commands.adapt import load_targets
    from key2mesh.train.adapt import AdaptWeights, benchmark_target

    return run(
        Path(a.out) / f"mv_dev_wmv{weight:g}",
        "anny-coco17",
        lambda ck: load_targets([str(part)], ck, a.cache, multiview=True),
        a,
        lambda ck, _: benchmark_target(str(part), ck),
        steps=a.steps,
        weights=AdaptWeights(10.0, 0.0, 0.0, mv=weight),
    )


SCALE_VARIANTS = {  # synthetic L_mv check: name → (scale-free, shape anchor), row label
    "metric": ((False, 0.0), "metres, shape in its gradient (before)"),
    "scale_free": ((True, 0.0), "scale-free, shape out of its gradient"),
    "anchor": ((True, 1.0), "scale-free + shape held at the pre-trained estimate (now)"),
}


def synthetic_scale_run(variant: str, a) -> dict:
    """L2D^t + L_mv on 4 synthetic views of held-out CMU poses (detector noise), known truth."""
    from key2mesh.train.adapt import AdaptWeights, synthetic_target

    (scale_free, anchor), _ = SCALE_VARIANTS[variant]
    out = run(
        Path(a.out) / f"synthetic_mv_{variant}",
        "anny-coco17",
        lambda ck: synthetic_target(
            a.cache, ck, "detector", n=1024, split="val", heldout="subjects", views=4
        ),
        a,
        steps=150,
        weights=AdaptWeights(10.0, 0.0, 0.0, mv=50.0),
        mv_scale_free=scale_free,
        mv_shape_anchor=anchor,
        selection="target",
    )
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    return {"first": rows[0], "last": rows[-1]}


def shift_run(name: str, a) -> Path:
    """Adapt to a synthetic shift of held-out CMU subjects (label-free; labels only logged)."""
    from key2mesh.train.adapt import synthetic_target

    source, profile, overrides = SHIFTS[name]
    return run(
        Path(a.out) / f"shift_{name}",
        source,
        lambda ck: synthetic_target(
            a.cache, ck, profile, n=2048, split="val", heldout="subjects", synth_overrides=overrides
        ),
        a,
        steps=a.steps,
    )


def logged_rows(run: Path) -> list[dict[str, float]]:
    """A run's metrics.csv rows as numbers (empty cells left out)."""
    return [
        {k: float(v) for k, v in r.items() if v not in ("", None)}
        for r in csv.DictReader(open(run / "metrics.csv"))
    ]


def kept_row(rows: list[dict[str, float]], key: str, **options) -> dict[str, float]:
    """The row ``select_step(..., **options)`` keeps: the lowest ``val_<key>`` among admissible
    steps, step 0 (the first row) when none is, as ``adapt`` does during the run."""
    from key2mesh.train.adapt import select_step

    start = {k[4:]: v for k, v in rows[0].items() if k.startswith("val_")}
    best = rows[0]
    for r in rows[1:]:
        m = {k[4:]: v for k, v in r.items() if k.startswith("val_")}
        if r[f"val_{key}"] < best[f"val_{key}"] and select_step(start, m, key, **options):
            best = r
    return best


def selections(run: Path) -> dict[str, dict]:
    """The metrics.csv row each rule keeps (rules applied to the logged label-free columns)."""
    rows = logged_rows(run)
    key = json.loads((run / "summary.json").read_text())["selection"]
    picked = {"step 0": rows[0]}  # in the tables' column order
    for rule in ("target", "guarded"):
        picked[rule] = kept_row(rows, key, rule=rule)
    picked["last step"] = rows[-1]
    picked["oracle (labels)"] = min(rows, key=lambda r: r["val_mon_pa_mpjpe"])
    return picked


RULES = {  # label-free single-view rules compared: column → select_step options
    "paper's rule (re-projection alone)": {"rule": "target"},
    "+ source error must not rise (tolerance 0)": {"source_tolerance": 0.0, "max_depth_share": 1.0},
    "+ source rise ≤ 1 %": {"source_tolerance": 0.01, "max_depth_share": 1.0},
    "+ depth share ≤ 0.5, source rise ≤ 1 % (default)": {},
}


def rule_picks(run: Path) -> dict[str, dict]:
    """The metrics.csv row each of RULES keeps on a single-view run (step 0 first)."""
    rows = logged_rows(run)
    return {"step 0": rows[0]} | {
        label: kept_row(rows, "reproj", **options) for label, options in RULES.items()
    }


def score(checkpoint: str, part: Path, step0: str | None = None):
    """EvalResult of a checkpoint on a part, and the paired PA-MPJPE / MPJPE differences to
    ``step0`` (another checkpoint) with intervals over instants."""
    from key2mesh.data.benchmark import load_benchmark_file
    from key2mesh.eval.benchmarks import benchmark_errors
    from key2mesh.eval.evaluate import result_from_errors
    from key2mesh.eval.intervals import paired_difference
    from key2mesh.eval.metrics import PROTOCOLS
    from key2mesh.inference.predictor import Key2Mesh

    bench = load_benchmark_file(part)
    protocol = PROTOCOLS["key2mesh"]

    def errors(ck):
        model = Key2Mesh.from_pretrained(ck, device="cpu", full_mesh=False)
        return benchmark_errors(model, bench, protocol)

    err, clusters, dropped = errors(checkpoint)
    result = result_from_errors(bench.name, err, protocol, dropped, clusters)
    paired = {}
    if step0 is not None:
        err0, clusters0, _ = errors(step0)
        assert (clusters0 == clusters).all()
        paired = {m: paired_difference(err[m], err0[m], clusters) for m in ("pa_mpjpe", "mpjpe")}
    return result, paired


def depth_and_plane_errors(checkpoint: str, part: Path) -> tuple[float, float]:
    """Mean error (mm) of the 12 limb joints, mid-hip centred, in the camera frame, split into
    the depth axis (|Δz|) and the image plane (|Δxy|): what one view's 2D points constrain (the
    plane) and what they do not (depth)."""
    from key2mesh.data.benchmark import load_benchmark_file
    from key2mesh.eval.benchmarks import model_to_camera_frame
    from key2mesh.eval.metrics import EVAL12_NAMES, center_on_pelvis
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.keypoints.sets import keypoint_names

    bench = load_benchmark_file(part)
    model = Key2Mesh.from_pretrained(checkpoint, device="cpu", full_mesh=False)
    pred = model.predict(
        bench.keypoints2d, bench.confidence, keypoint_set=bench.keypoint_set, mesh=False
    )
    gset = bench.joints3d_set
    kp = model_to_camera_frame(model.keypoints3d(pred.rotmats, pred.shape).float())
    if model.keypoint_set != gset:
        from key2mesh.keypoints.convert import convert_keypoints

        kp = convert_keypoints(kp, None, model.keypoint_set, gset)[0].float()
    idx = [keypoint_names(gset).index(n) for n in EVAL12_NAMES]
    diff = (
        center_on_pelvis(kp, gset, "midhip")[:, idx]
        - center_on_pelvis(bench.joints3d, gset, "midhip")[:, idx]
    )
    return 1000 * float(diff[..., 2].abs().mean()), 1000 * float(diff[..., :2].norm(dim=-1).mean())


def reprojections(checkpoints: list[str], part: Path) -> list[float]:
    """Mean distance (‰ of the box) between the detections and, first, the ground truth projected
    through the real cameras, then each checkpoint's keypoints projected through its virtual
    camera (compare.py's measure): how much 2D misfit the true 3D pose itself leaves."""
    from compare import reprojection_error

    from key2mesh.data.benchmark import load_benchmark_file
    from key2mesh.geometry.normalize import bbox_normalize
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.keypoints.convert import convert_keypoints

    bench = load_benchmark_file(part)
    out = []
    for i, ck in enumerate(checkpoints):
        model = Key2Mesh.from_pretrained(ck, device="cpu", full_mesh=False)
        kp, conf = convert_keypoints(
            bench.keypoints2d, bench.confidence, bench.keypoint_set, model.keypoint_set
        )
        kp, conf = torch.as_tensor(kp).float(), torch.as_tensor(conf).float()
        if i == 0:  # the truth, in the set of the ground truth (COCO-17)
            gk, gc = convert_keypoints(
                bench.keypoints2d, bench.confidence, bench.keypoint_set, bench.joints3d_set
            )
            gk, gc = torch.as_tensor(gk).float(), torch.as_tensor(gc).float()
            uvw = torch.einsum("nij,nkj->nki", bench.intrinsics, bench.joints3d)
            valid = gc >= model.normalization.conf_threshold
            a, _ = bbox_normalize(gk, gc, valid=valid)
            b, _ = bbox_normalize(uvw[..., :2] / uvw[..., 2:], gc, valid=valid)
            out.append(1000 * float((a - b).norm(dim=-1)[valid].mean()))
        pred = model.predict(kp, conf, mesh=False)
        out.append(reprojection_error(model, pred.rotmats, pred.shape, kp, conf))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default="cache/mocap_all.npz")
    p.add_argument("--bench", default="cache/pose2sim_benchmark.npz")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", default="runs/adaptation")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--runs", default=",".join(RUNS), help="comma-separated subset of " + ",".join(RUNS)
    )
    p.add_argument(
        "--shifts", default="close", help="comma-separated subset of " + ",".join(SHIFTS)
    )
    p.add_argument("--rerun", action="store_true", help="redo runs whose summary.json exists")
    p.add_argument("--results", default="benchmarks/results/adaptation.md")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    files = parts(a.bench)
    lines = [
        f"pose2sim real views split by whole instants: dev = {files['dev']}, test = "
        f"{files['test']}. {a.steps} adaptation steps, checked every 25; cells PA-MPJPE / MPJPE "
        "(mm, 12 limb joints, mid-hip); [low, high] 95 % bootstrap over instants; Δ: paired "
        "difference to the source model (step 0) on the same views.",
        "",
    ]
    result: dict[str, float] = {}

    # 1. pre-trained models (the demo's default is chosen on dev + held-out MoCap)
    lines += [
        "| pre-trained model | dev | test | Δ vs anny-coco17, dev | Δ test |",
        "|---|---|---|---|---|",
    ]
    for ck in ("anny-coco17", "anny-coco17-ensemble"):
        cells, deltas = [], []
        for part in PARTS:
            res, paired = score(ck, files[part], None if ck == "anny-coco17" else "anny-coco17")
            cells.append(f"{res.intervals['pa_mpjpe'].text()} / {res.intervals['mpjpe'].text()}")
            deltas.append(
                " / ".join(paired[m].text() for m in ("pa_mpjpe", "mpjpe")) if paired else "-"
            )
            result[f"{ck.replace('-', '_')}_{part}_pa_mpjpe"] = res.pa_mpjpe
        lines.append(f"| {ck} | {cells[0]} | {cells[1]} | {deltas[0]} | {deltas[1]} |")
    lines.append("")

    # 2. adaptation runs (all development parts first), per part; each rule's pick from the logs
    for part in PARTS:
        for name in [r for r in a.runs.split(",") if r]:
            adapt_run(f"{name}_{part}", *RUNS[name], files[part], a)
    for name in [r for r in a.runs.split(",") if r]:
        source, multiview = RUNS[name]
        lines += [
            f"**{name}**: {source}{' --multiview' if multiview else ''}, adapted to each part's "
            "own detections (label-free; labels only logged).",
            "",
            "| part | "
            + " | ".join(("step 0", "target", "guarded", "last step", "oracle (labels)"))
            + " | kept by `adapt` (best.pt) | Δ best.pt vs step 0 (PA / MPJPE) | size |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for part in PARTS:
            run = adapt_run(f"{name}_{part}", source, multiview, files[part], a)
            picked = selections(run)
            cells = [
                f"{r['val_mon_pa_mpjpe']:.1f} / {r['val_mon_mpjpe']:.1f} (s{int(r['step'])})"
                for r in picked.values()
            ]
            res, paired = score(str(run / "best.pt"), files[part], source)
            summary = json.loads((run / "summary.json").read_text())
            best_row = picked["guarded"]
            lines.append(
                f"| {part} | "
                + " | ".join(cells)
                + f" | step {summary['best']['step']}: {res.intervals['pa_mpjpe'].text()} / "
                f"{res.intervals['mpjpe'].text()} | {paired['pa_mpjpe'].text()} / "
                f"{paired['mpjpe'].text()} | {best_row['val_mon_size']:.3f} |"
            )
            for rule, r in picked.items():
                tag = rule.split(" ")[0]
                result[f"{name}_{part}_{tag}_pa_mpjpe"] = r["val_mon_pa_mpjpe"]
            result[f"{name}_{part}_pa_ratio"] = res.pa_mpjpe / picked["step 0"]["val_mon_pa_mpjpe"]
            result[f"{name}_{part}_mpjpe_ratio"] = res.mpjpe / picked["step 0"]["val_mon_mpjpe"]
            result[f"{name}_{part}_pa_delta_ci_low"] = paired["pa_mpjpe"].low
            result[f"{name}_{part}_pa_delta_ci_high"] = paired["pa_mpjpe"].high
        lines.append("")

    # the single-view guard, chosen on the development runs (test runs shown, not used)
    single_runs = [n for n in a.runs.split(",") if n and not RUNS[n][1]]
    lines += [
        "**Label-free selection rules on the single-view runs** (the step each rule keeps, "
        "PA-MPJPE / MPJPE mm; every rule needs a 5 % fall of the held-out re-projection; "
        "the default was chosen on the dev rows and the synthetic shifts):",
        "",
        "| run | part | step 0 | " + " | ".join(RULES) + " |",
        "|---|---|---|" + "---|" * len(RULES),
    ]
    for name in single_runs:
        for part in PARTS:
            picks = rule_picks(Path(a.out) / f"{name}_{part}")
            cells = [
                f"{r['val_mon_pa_mpjpe']:.1f} / {r['val_mon_mpjpe']:.1f} (s{int(r['step'])})"
                for r in picks.values()
            ]
            lines.append(f"| {name} | {part} | " + " | ".join(cells) + " |")
    for name in [r for r in a.shifts.split(",") if r]:  # synthetic shifts: development data
        picks = rule_picks(shift_run(name, a))
        cells = [
            f"{r['val_mon_pa_mpjpe']:.1f} / {r['val_mon_mpjpe']:.1f} (s{int(r['step'])})"
            for r in picks.values()
        ]
        lines.append(f"| shift {name} | synthetic (dev) | " + " | ".join(cells) + " |")
    lines.append("")

    # why single-view adaptation hurts a model that already fits: depth vs image-plane errors
    lines += [
        "**Where the error goes** (12 limb joints, mid-hip centred, camera frame, mm): mean |Δ| "
        "along the depth axis, which one view leaves open, and in the image plane, which its 2D "
        "points constrain; step 0 vs the last step of each run.",
        "",
        "| run | part | depth error, step 0 → last | image-plane error, step 0 → last |",
        "|---|---|---|---|",
    ]
    for name in [r for r in a.runs.split(",") if r]:
        for part in PARTS:
            run = Path(a.out) / f"{name}_{part}"
            d0, p0 = depth_and_plane_errors(RUNS[name][0], files[part])
            d1, p1 = depth_and_plane_errors(str(run / "last.pt"), files[part])
            lines.append(f"| {name} | {part} | {d0:.1f} → {d1:.1f} | {p0:.1f} → {p1:.1f} |")
            result[f"{name}_{part}_depth_err_ratio"] = d1 / d0
            result[f"{name}_{part}_plane_err_ratio"] = p1 / p0
    lines.append("")

    lines += [
        "**How much 2D misfit is left to fit** (mean distance between the detections and the "
        "projected keypoints, ‰ of the box; the ground truth projected through the real cameras):",
        "",
        "| part | ground truth | anny-coco17 (step 0) | single view, last step |",
        "|---|---|---|---|",
    ]
    for part in PARTS if "single" in a.runs.split(",") else ():
        gt, pt, last = reprojections(
            ["anny-coco17", str(Path(a.out) / f"single_{part}" / "last.pt")], files[part]
        )
        lines.append(f"| {part} | {gt:.1f} | {pt:.1f} | {last:.1f} |")
        result[f"{part}_reproj_gt"], result[f"{part}_reproj_pretrained"] = gt, pt
    lines.append("")

    if "mv" in a.runs.split(","):  # w_mv, chosen on the development part only
        from key2mesh.train.adapt import MV_WEIGHT

        lines += [
            "**w_mv of `--multiview`** (development part, adapted to its own detections, the step "
            "the guarded rule keeps):",
            "",
            "| w_mv | PA-MPJPE / MPJPE |",
            "|---|---|",
        ]
        for weight in (10.0, MV_WEIGHT, 100.0):
            run_dir = (
                Path(a.out) / "mv_dev" if weight == MV_WEIGHT else wmv_run(weight, files["dev"], a)
            )
            r = selections(run_dir)["guarded"]
            lines.append(
                f"| {weight:g}{' (default)' if weight == MV_WEIGHT else ''} | "
                f"{r['val_mon_pa_mpjpe']:.1f} / {r['val_mon_mpjpe']:.1f} (s{int(r['step'])}) |"
            )
            result[f"mv_dev_wmv{weight:g}_pa_mpjpe"] = r["val_mon_pa_mpjpe"]
        lines.append("")

    # 3. synthetic shifts (held-out CMU subjects): does label-free adaptation help there?
    shifts = [r for r in a.shifts.split(",") if r]
    if shifts:
        lines += [
            "**Synthetic shifts** (2,048 samples of the held-out CMU subjects, adapted label-free "
            "to them; labels only logged; PA-MPJPE / MPJPE mm at the step each rule keeps):",
            "",
            "| shift | step 0 | target | guarded | last step | oracle (labels) |",
            "|---|---|---|---|---|---|",
        ]
    for name in shifts:
        picked = selections(shift_run(name, a))
        source, profile, overrides = SHIFTS[name]
        desc = f"{source}, noise '{profile}'" + (f", {overrides}" if overrides else "")
        lines.append(
            f"| {name} ({desc}) | "
            + " | ".join(
                f"{r['val_mon_pa_mpjpe']:.1f} / {r['val_mon_mpjpe']:.1f} (s{int(r['step'])})"
                for r in picked.values()
            )
            + " |"
        )
        for rule, r in picked.items():
            result[f"shift_{name}_{rule.split(' ')[0]}_pa_mpjpe"] = r["val_mon_pa_mpjpe"]
    lines.append("")

    # 3. L_mv's scale on synthetic views with known truth
    lines += [
        "**L_mv and body size** (synthetic: 4 random viewpoints of 256 held-out CMU-subject poses, "
        "detector noise; L2D^t + L_mv, w_mv 50, 150 steps):",
        "",
        "| L_mv | PA-MPJPE / MPJPE before | after (last step) | body size after / before |",
        "|---|---|---|---|",
    ]
    for variant, (_, label) in SCALE_VARIANTS.items():
        r = synthetic_scale_run(variant, a)
        f, z = ({k: float(v) for k, v in r[x].items() if v} for x in ("first", "last"))
        size = z["val_mon_size"] / f["val_mon_size"]
        lines.append(
            f"| {label} | {f['val_mon_pa_mpjpe']:.1f} / {f['val_mon_mpjpe']:.1f} | "
            f"{z['val_mon_pa_mpjpe']:.1f} / {z['val_mon_mpjpe']:.1f} | {size:.3f} |"
        )
        result[f"synthetic_mv_{variant}_mpjpe_ratio"] = z["val_mon_mpjpe"] / f["val_mon_mpjpe"]
        result[f"synthetic_mv_{variant}_pa_ratio"] = z["val_mon_pa_mpjpe"] / f["val_mon_pa_mpjpe"]
        result[f"synthetic_mv_{variant}_size_ratio"] = size
    from _common import _commit, _machine

    command = " ".join(["python", *sys.argv])
    header = f"- command: `{command}`\n- commit: {_commit()}\n- machine: {_machine()}\n\n"
    text = "\n".join(lines)
    print(text)
    Path(a.results).parent.mkdir(parents=True, exist_ok=True)
    Path(a.results).write_text(header + text + "\n")
    line = "RESULT " + " ".join(f"{k}={v:.3f}" for k, v in result.items())
    print(line)
    Path(a.results).with_name(Path(a.results).stem + "_result.txt").write_text(line + "\n")


if __name__ == "__main__":
    main()
