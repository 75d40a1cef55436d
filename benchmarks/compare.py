"""Key2Mesh vs the optimisation baseline (SMPLify-style fit) vs Key2Mesh + refinement, on the same
inputs in one run, for two input sets:

- ``mocap``: held-out MoCap clips projected with a detector-like noise profile (ground truth: the
  body parameters; 14 H36M joints): only frames held out by every network scored (each member of
  an ensemble, the adapted checkpoints), the same frames for every row;
- ``pose2sim``: real MediaPipe detections in the 4 Pose2Sim demo views (ground truth: 3D
  triangulated from all views, ``key2mesh data pose2sim``; 12 limb joints), its **test part**
  (second half of the clip's instants; defaults are chosen on the first half).

    .venv/bin/python benchmarks/compare.py [--checkpoint anny-coco17] [--inputs mocap,pose2sim]
        [--adapted CKPT|none] [--adapted-mv CKPT|none] [--num 512] [--iters 100] [--refine-iters 50]
        [--out benchmarks/results/compare.md]  (the RESULT line also goes to compare_result.txt beside it)

Accuracy: PA-MPJPE / MPJPE (mm, mid-hip pelvis) with 95 % bootstrap intervals over instants,
and paired differences to the baseline (a method is called better only where the paired interval
excludes 0). Latency: batch 1 and the whole set as one batch; speed-ups are ratios to the
baseline measured in the same run. The last line is machine-readable:
``RESULT pose2sim_k2m_pa_mpjpe=... pose2sim_base_pa_mpjpe=... pose2sim_pa_ratio_k2m_vs_base=... ...``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

# anny-coco17 adapted label-free to the test part's own detections with `adapt`'s defaults, and
# with --multiview (benchmarks/adaptation.py writes both)
ADAPTED = "runs/adaptation/single_test/best.pt"
ADAPTED_MV = "runs/adaptation/mv_test/best.pt"


def _mocap_inputs(model, a, nets):
    """(keypoints (N,K,2), confidence (N,K), score(rotmats, shape) -> errors, description,
    instants, RESULT keys) of held-out clips: only frames that every network of ``nets`` (each
    member of an ensemble) held out in pre-training, so no row is scored on its own training
    frames and every row on the same ones."""
    from key2mesh.data.heldout import mocap_samples
    from key2mesh.eval.evaluate import score_bodies

    checkpoints = [ck for net in nets for ck in net.member_checkpoints]
    batch = mocap_samples(a.cache, checkpoints, a.profile, n=a.num, seed=7, split="val")
    counts = _heldout_counts(a.cache, checkpoints)
    desc = (
        f"{a.num} frames drawn from the {batch.pool_size} MoCap frames ({a.cache}) held out by "
        f"every network below ({len(checkpoints)} checkpoints; {counts['clip_frames']} of them "
        f"in held-out clips, {counts['subject_frames']} of held-out subjects; {a.checkpoint} "
        f"alone holds out {counts['own_frames']}), noise profile '{a.profile}', 14 joints"
    )
    return (
        batch.keypoints2d,
        batch.confidence,
        lambda r, s: score_bodies(
            model.body, r, s, model.body, batch.rotmats, batch.shape, "key2mesh"
        ),
        desc,
        None,  # every sample its own instant
        {"heldout_frames": batch.pool_size, **{f"heldout_{k}": v for k, v in counts.items()}},
    )


def _heldout_counts(cache: str, checkpoints) -> dict[str, int]:
    """How many frames of ``cache`` every checkpoint held out, per held-out set, and how many the
    first one alone held out."""
    from key2mesh.data.cache import PoseBank

    bank = PoseBank.load(cache)
    splits = [ck.split_options() for ck in checkpoints]

    def common(heldout: str) -> int:
        sets = [bank.validation_sets(**o) for o in splits]
        if any(heldout not in s for s in sets):
            return 0
        return len(bank.common_frames(splits, "val", heldout))

    return {
        "clip_frames": common("clips"),
        "subject_frames": common("subjects"),
        "own_frames": len(bank.common_frames(splits[:1])),
    }


def _pose2sim_inputs(model, a, nets):
    """The same for the real pose2sim views (detections converted to the model's keypoint set)."""
    from key2mesh.data.datasets import load_benchmark
    from key2mesh.eval.benchmarks import ground_truth, score_parameters
    from key2mesh.eval.metrics import PROTOCOLS
    from key2mesh.keypoints.convert import convert_keypoints

    if not Path(a.pose2sim).is_file():
        raise SystemExit(
            f"{a.pose2sim} missing: run `key2mesh data pose2sim` (it writes the parts)"
        )
    bench = load_benchmark(a.pose2sim)
    gj, gset, gv = ground_truth(bench, PROTOCOLS["key2mesh"])
    kp, conf = convert_keypoints(
        bench.keypoints2d, bench.confidence, bench.keypoint_set, model.keypoint_set
    )
    desc = (
        f"{len(bench)} real views ({len(set(bench.instant_ids()))} instants) of the pose2sim demo "
        f"({a.pose2sim}; MediaPipe), 3D triangulated from 4 cameras, 12 limb joints"
    )
    return (
        kp,
        conf,
        lambda r, s: score_parameters(model.body, r, s, gj, gset, gv, PROTOCOLS["key2mesh"]),
        desc,
        bench.instant_ids(),
        {},
    )


def reprojection_error(model, rotmats, shape, keypoints, confidence) -> float:
    """Mean distance (thousandths of the box) between the inputs and the predicted keypoints
    projected through the model's virtual camera, both box-normalised over the same confident
    joints: how closely a method explains the 2D evidence it was given."""
    from key2mesh.geometry.normalize import bbox_normalize

    thr = model.normalization.conf_threshold
    valid = confidence >= thr
    kp3d = model.keypoints3d(rotmats, shape)
    projected = model.camera.project(kp3d.float())
    a, _ = bbox_normalize(keypoints.float(), confidence, thr, valid=valid)
    b, _ = bbox_normalize(projected, confidence, thr, valid=valid)
    err = (a - b).norm(dim=-1)[valid]
    return 1000 * float(err.mean())


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="anny-coco17")
    p.add_argument("--inputs", default="mocap,pose2sim", help="comma-separated: mocap, pose2sim")
    p.add_argument(
        "--cache",
        default="cache/mocap_all.npz",
        help="the MoCap cache the checkpoint was trained on",
    )
    p.add_argument(
        "--pose2sim",
        default="cache/pose2sim_benchmark_test.npz",
        help="benchmark file: the test part that `key2mesh data pose2sim` writes",
    )
    p.add_argument(
        "--adapted",
        default=ADAPTED,
        help=f"an adapted checkpoint scored beside the pre-trained one (default {ADAPTED}, from "
        "benchmarks/adaptation.py, when it exists; 'none' to skip)",
    )
    p.add_argument(
        "--adapted-mv",
        default=ADAPTED_MV,
        help=f"a checkpoint adapted with the multi-view term (default {ADAPTED_MV}, from "
        "benchmarks/adaptation.py, when it exists; 'none' to skip)",
    )
    p.add_argument(
        "--ensemble",
        default="anny-coco17-ensemble",
        help="an ensemble (shipped name or 'a.pt+b.pt') scored beside the pre-trained model "
        "(default anny-coco17-ensemble: the shipped coco17 recipe's two seeds; 'none' to skip)",
    )
    p.add_argument("--profile", default="detector")
    p.add_argument("--num", type=int, default=512, help="MoCap inputs; the whole set is one batch")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--refine-iters", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/compare.md")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from key2mesh.eval.intervals import Interval, bootstrap_mean, paired_difference
    from key2mesh.fitting.smplify import fit_to_keypoints
    from key2mesh.inference.predictor import Key2Mesh

    model = Key2Mesh.from_pretrained(a.checkpoint, device="cpu", full_mesh=False)
    model_int8 = Key2Mesh.from_pretrained(a.checkpoint, device="cpu", full_mesh=False, int8=True)
    ensemble = None
    if a.ensemble != "none":
        ensemble = Key2Mesh.from_pretrained(a.ensemble, device="cpu", full_mesh=False)
    body, kset = model.body, model.keypoint_set

    def optional(path: str, default: str, rows: str):
        """The checkpoint at ``path``, or None for 'none' or a default that ablation.sh has not made."""
        if path == default and not Path(default).is_file():
            print(f"note: {default} not found (run benchmarks/adaptation.py); no {rows}")
            return None
        return (
            None
            if path == "none"
            else Key2Mesh.from_pretrained(path, device="cpu", full_mesh=False)
        )

    adapted = optional(a.adapted, ADAPTED, "adapted rows")
    adapted_mv = optional(a.adapted_mv, ADAPTED_MV, "multi-view row")

    def k2m(k, c, net=model):
        pr = net.predict(k, c, mesh=False)
        return pr.rotmats, pr.shape

    def fit(k, c, init=None, iters=a.iters):
        r = fit_to_keypoints(
            body,
            k,
            c,
            kset,
            init_rotmats=None if init is None else init[0],
            init_shape=None if init is None else init[1],
            iters=iters,
            camera=model.camera,  # the refined prediction explains the input through it
        )
        return r.rotmats.detach(), r.shape.detach()

    # method name -> (short name for the RESULT line, function)
    methods = {
        "Key2Mesh (pre-trained)": ("k2m", lambda k, c: k2m(k, c)),
        f"Optimisation baseline ({a.iters} it)": ("base", lambda k, c: fit(k, c)),
        f"Key2Mesh + refinement ({a.refine_iters} it)": (
            "k2m_refine",
            lambda k, c: fit(k, c, k2m(k, c), a.refine_iters),
        ),
        "Key2Mesh (pre-trained), int8 network": ("k2m_int8", lambda k, c: k2m(k, c, model_int8)),
    }
    if ensemble is not None:
        methods[f"Key2Mesh ensemble ({a.ensemble}, {ensemble.members} networks)"] = (
            "ens",
            lambda k, c: k2m(k, c, ensemble),
        )
    if adapted is not None:
        methods["Key2Mesh adapted (label-free, adapt defaults)"] = (
            "adapted",
            lambda k, c: k2m(k, c, adapted),
        )
        methods[f"Key2Mesh adapted + refinement ({a.refine_iters} it)"] = (
            "adapted_refine",
            lambda k, c: fit(k, c, k2m(k, c, adapted), a.refine_iters),
        )
    if adapted_mv is not None:
        methods["Key2Mesh adapted, multi-view (adapt --multiview defaults)"] = (
            "adapted_mv",
            lambda k, c: k2m(k, c, adapted_mv),
        )
    loaders = {"mocap": _mocap_inputs, "pose2sim": _pose2sim_inputs}
    lines = [
        f"Checkpoint {a.checkpoint}"
        + (f", adapted {a.adapted}" if adapted is not None else "")
        + (f", adapted multi-view {a.adapted_mv}" if adapted_mv is not None else "")
        + f"; {a.threads} CPU threads; speed-ups are vs the baseline in the same run.",
        "",
    ]
    short = {name: code for name, (code, _) in methods.items()}
    result: list[str] = []
    nets = [n for n in (model, model_int8, ensemble, adapted, adapted_mv) if n is not None]
    for name in [s.strip() for s in a.inputs.split(",") if s.strip()]:
        kp, conf, score, desc, instants, keys = loaders[name](model, a, nets)
        result += [f"{name}_{k}={v}" for k, v in keys.items()]
        n = len(kp)
        rows, errors = [], {}
        for method, (code, fn) in methods.items():
            t0 = time.perf_counter()
            r, s = fn(kp, conf)  # the whole set as one batch
            t_all = time.perf_counter() - t0
            err = score(r, s)
            errors[code] = err
            t1 = min(_time(lambda: fn(kp[:1], conf[:1])) for _ in range(3))
            rows.append(
                (
                    method,
                    bootstrap_mean(err["pa_mpjpe"], instants),
                    bootstrap_mean(err["mpjpe"], instants),
                    1000 * t1,
                    1000 * t_all,
                    reprojection_error(model, r, s, torch.as_tensor(kp), torch.as_tensor(conf)),
                    float(err["pa_mpjpe"].median()),
                )
            )
            print(f"{name}: {rows[-1]}", flush=True)
        base1, base_all = rows[1][3], rows[1][4]

        def vs(code: str, ref: str) -> tuple[Interval, Interval]:
            """Paired differences (PA-MPJPE, MPJPE) of method ``code`` minus ``ref``, mm."""
            return tuple(
                paired_difference(errors[code][m], errors[ref][m], instants)
                for m in ("pa_mpjpe", "mpjpe")
            )

        lines += [
            f"**{name}**: {desc}. [low, high]: 95 % bootstrap interval over instants; Δ: paired "
            "difference to the baseline (negative: better than the baseline).",
            "",
            f"| method | PA-MPJPE (mm) | MPJPE (mm) | Δ PA-MPJPE vs baseline | Δ MPJPE vs baseline | median PA-MPJPE | re-projection (‰ of the box) | batch 1 (ms) | batch {n} (ms) | speed-up vs baseline (batch 1 / {n}) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for method, pa, mp, t1, t_n, rep, med in rows:
            code = short[method]
            d_pa, d_mp = vs(code, "base")
            lines.append(
                f"| {method} | {pa.text()} | {mp.text()} | {d_pa.text()} | {d_mp.text()} | "
                f"{med:.1f} | {rep:.1f} | {t1:.1f} | {t_n:.0f} | {base1 / t1:.0f}x / {base_all / t_n:.0f}x |"
            )
            result += [
                f"{name}_{code}_pa_mpjpe={pa.mean:.1f}",
                f"{name}_{code}_pa_mpjpe_ci={pa.low:.1f},{pa.high:.1f}",
                f"{name}_{code}_mpjpe={mp.mean:.1f}",
                f"{name}_{code}_mpjpe_ci={mp.low:.1f},{mp.high:.1f}",
                f"{name}_{code}_reproj={rep:.1f}",
                f"{name}_{code}_pa_median={med:.1f}",
            ]
            if code != "base":
                result += [
                    f"{name}_{code}_pa_diff_vs_base_ci={d_pa.low:.1f},{d_pa.high:.1f}",
                    f"{name}_{code}_mpjpe_diff_vs_base_ci={d_mp.low:.1f},{d_mp.high:.1f}",
                ]
        lines.append("")
        k2m_row, base_row = rows[0], rows[1]
        ens_row = next((r for r in rows if short[r[0]] == "ens"), None)
        if ens_row is not None:
            d_pa, d_mp = vs("ens", "k2m")
            result += [
                f"{name}_pa_ratio_ens_vs_base={ens_row[1].mean / base_row[1].mean:.3f}",
                f"{name}_mpjpe_ratio_ens_vs_base={ens_row[2].mean / base_row[2].mean:.3f}",
                f"{name}_speedup_ens_b1={base1 / ens_row[3]:.0f}",
                f"{name}_ens_vs_k2m_pa_diff_ci={d_pa.low:.1f},{d_pa.high:.1f}",
                f"{name}_ens_vs_k2m_mpjpe_diff_ci={d_mp.low:.1f},{d_mp.high:.1f}",
            ]
        for code in ("adapted", "adapted_mv"):
            row = next((r for r in rows if short[r[0]] == code), None)
            if row is not None:  # adaptation's gain over the model it started from
                d_pa, d_mp = vs(code, "k2m")
                result += [
                    f"{name}_pa_ratio_{code}_vs_k2m={row[1].mean / k2m_row[1].mean:.3f}",
                    f"{name}_mpjpe_ratio_{code}_vs_k2m={row[2].mean / k2m_row[2].mean:.3f}",
                    f"{name}_{code}_vs_k2m_pa_diff_ci={d_pa.low:.1f},{d_pa.high:.1f}",
                    f"{name}_{code}_vs_k2m_mpjpe_diff_ci={d_mp.low:.1f},{d_mp.high:.1f}",
                ]
        result += [
            f"{name}_pa_ratio_k2m_vs_base={k2m_row[1].mean / base_row[1].mean:.3f}",
            f"{name}_mpjpe_ratio_k2m_vs_base={k2m_row[2].mean / base_row[2].mean:.3f}",
            f"{name}_speedup_b1={base1 / k2m_row[3]:.0f}",
            f"{name}_speedup_all={base_all / k2m_row[4]:.0f}",
        ]
    text = "\n".join(lines)
    print(text)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    from _common import results_header

    header = results_header("Key2Mesh vs the optimisation baseline")
    Path(a.out).write_text(header + "\n" + text + "\n")
    line = "RESULT " + " ".join(result)
    Path(a.out).with_name(Path(a.out).stem + "_result.txt").write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
