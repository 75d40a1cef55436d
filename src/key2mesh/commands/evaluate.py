"""`key2mesh evaluate`: MPJPE / PA-MPJPE / PVE of a checkpoint under an explicit protocol."""

from __future__ import annotations

import argparse
import json

from key2mesh.commands._args import add_checkpoint_argument, add_device_argument, positive_int

# the mocap-heldout options' defaults (another value given with a real dataset is refused)
NOISE_DEFAULT, NUM_DEFAULT, HELDOUT_DEFAULT = "none", 4096, "all"
# --noise-profile: the keys of key2mesh.data.noise.PROFILES (not imported: torch; a test checks)
NOISE_PROFILES = ("none", "detector", "strong")

HELP = "evaluate a checkpoint (3dpw, h36m-p2, mocap-heldout, a benchmark .npz) with explicit protocol switches"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        required=True,
        help="mocap-heldout, 3dpw, h36m-p2, or a benchmark .npz (e.g. from `key2mesh data pose2sim`)",
    )
    p.add_argument(
        "--path",
        help="dataset file/folder (3DPW sequenceFiles root or .pkl; H3.6M SPIN-style .npz)",
    )
    p.add_argument(
        "--detections", help="H3.6M: your OpenPose detections (else the npz's 'openpose' key)"
    )
    add_checkpoint_argument(
        p,
        "key2mesh checkpoint, shipped name, or the paper's official best-model.ckpt",
        required=True,
    )
    p.add_argument("--cache", help="mocap-heldout: the MoCap training cache")
    p.add_argument(
        "--noise-profile",
        default=NOISE_DEFAULT,
        choices=list(NOISE_PROFILES),
        help="mocap-heldout: the 2D noise of the synthetic detections (default: %(default)s)",
    )
    p.add_argument(
        "--num",
        type=positive_int,
        default=NUM_DEFAULT,
        help="mocap-heldout: number of samples (default: %(default)s)",
    )
    p.add_argument(
        "--heldout",
        choices=["all", "clips", "subjects"],
        default=HELDOUT_DEFAULT,
        help="mocap-heldout: every held-out frame, only the held-out clips of sources without subjects, "
        "or only the held-out subjects (e.g. CMU 02 and 05) (default: %(default)s)",
    )
    p.add_argument(
        "--split",
        help="3dpw split: test, validation, train (default: test; other datasets have none)",
    )
    p.add_argument(
        "--smpl-dir",
        help="SMPL files for ground-truth meshes of 3dpw / h36m-p2 (and for an SMPL checkpoint's body)",
    )
    p.add_argument(
        "--h36m-regressor",
        help="SPIN's J_regressor_h36m.npy for the SMPL ground truth's H36M joints",
    )
    p.add_argument(
        "--protocol",
        choices=["key2mesh", "spin"],
        default="key2mesh",
        help="the switches below as a set: key2mesh's or SPIN's evaluation (default: %(default)s)",
    )
    p.add_argument(
        "--gt-gender",
        choices=["neutral", "gendered"],
        help="ground-truth body: the neutral model or the subject's gendered one (when not "
        "given: the protocol's)",
    )
    p.add_argument(
        "--pelvis",
        choices=["h36m-root", "midhip"],
        help="root joint that MPJPE aligns on (when not given: the protocol's)",
    )
    p.add_argument(
        "--pve-align",
        choices=["none", "root"],
        help="PVE without alignment or after root alignment (when not given: the protocol's)",
    )
    p.add_argument(
        "--json", dest="json_out", metavar="FILE", help="also write the results as JSON to FILE"
    )
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from rich.console import Console
    from rich.table import Table

    from key2mesh.commands._args import output_file
    from key2mesh.errors import Key2MeshError
    from key2mesh.eval.evaluate import score_bodies, summarize
    from key2mesh.eval.metrics import PROTOCOLS
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.safe_paths import atomic_write_text, refuse_overwriting_inputs

    if args.json_out:
        output_file(args.json_out, "--json")  # a folder: refused now, not after the evaluation
        refuse_overwriting_inputs(
            args.json_out,
            [
                args.dataset,
                args.path,
                args.detections,
                args.checkpoint,
                args.cache,
                args.h36m_regressor,
            ],
            option="--json",
        )
    _refuse_unused_options(args)
    protocol = PROTOCOLS[args.protocol]
    overrides = {
        k: v
        for k, v in (
            ("gt_gender", args.gt_gender),
            ("pelvis", args.pelvis and args.pelvis.replace("-", "_")),
            ("pve_align", args.pve_align),
        )
        if v
    }
    protocol = dataclasses.replace(protocol, **overrides)
    model = Key2Mesh.from_pretrained(
        args.checkpoint, device=args.device, full_mesh=False, smpl_dir=args.smpl_dir
    )
    if args.dataset == "mocap-heldout":
        if not args.cache:
            raise Key2MeshError(
                "--dataset mocap-heldout needs --cache (from `key2mesh data prepare`)"
            )
        from key2mesh.data.heldout import mocap_samples

        data = mocap_samples(
            args.cache,
            model.member_checkpoints,  # an ensemble: only frames every member held out
            args.noise_profile,
            n=args.num,
            split="val",
            heldout=args.heldout,
        )
        pred = model.predict(
            data.keypoints2d, data.confidence, keypoint_set=data.keypoint_set, mesh=False
        )
        keep = pred.valid.cpu() & data.keypoints2d.isfinite().all(-1).all(
            -1
        )  # usable detections only
        dev = model.device
        errors = score_bodies(
            model.body,
            pred.rotmats[keep.to(dev)],
            pred.shape[keep.to(dev)],
            model.body,
            data.rotmats[keep].to(dev),
            data.shape[keep].to(dev),
            protocol,
        )
        suffix = "" if args.heldout == "all" else f"[{args.heldout}]"
        result = summarize(
            f"mocap-heldout{suffix}+{args.noise_profile}", errors, protocol, int((~keep).sum())
        )
    elif args.dataset in ("3dpw", "h36m-p2") or args.dataset.endswith(".npz"):
        from key2mesh.eval.benchmarks import evaluate_benchmark

        result = evaluate_benchmark(
            model,
            args.dataset,
            args.path,
            protocol,
            split=args.split,
            detections=args.detections,
            smpl_dir=args.smpl_dir,
            h36m_regressor=args.h36m_regressor,
        )
    else:
        raise Key2MeshError(
            f"unknown dataset {args.dataset!r}: use mocap-heldout, 3dpw, h36m-p2 or a benchmark .npz file"
        )
    table = Table(
        title=f"{result.name} — protocol {args.protocol} {protocol.__dict__}",
        caption=f"\\[low, high]: 95 % bootstrap interval over {result.clusters} clusters "
        "(instants of a multi-view set, or video sequences)",
    )
    for col in ("n", "dropped", "MPJPE (mm)", "PA-MPJPE (mm)", "PVE (mm)"):
        table.add_column(col, justify="right")
    cell = lambda k: result.intervals[k].text() if k in result.intervals else "-"  # noqa: E731
    table.add_row(
        str(result.count), str(result.dropped), cell("mpjpe"), cell("pa_mpjpe"), cell("pve")
    )
    Console().print(table)
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(result.row(), indent=2))
    return 0


def _refuse_unused_options(args: argparse.Namespace) -> None:
    """A one-line error for options that do not apply to ``--dataset`` (they were ignored
    silently: e.g. ``--detections`` or ``--path`` with mocap-heldout, ``--noise-profile`` with a
    real benchmark). The mocap-heldout options with defaults count as given when not the
    default."""
    from key2mesh.errors import Key2MeshError

    if args.dataset == "mocap-heldout":
        unused = {
            "--path": args.path,
            "--detections": args.detections,
            "--split": args.split,
            "--h36m-regressor": args.h36m_regressor,
        }
    else:
        unused = {
            "--cache": args.cache,
            "--noise-profile": args.noise_profile != NOISE_DEFAULT,
            "--num": args.num != NUM_DEFAULT,
            "--heldout": args.heldout != HELDOUT_DEFAULT,
        }
    given = [name for name, value in unused.items() if value]
    if given:
        raise Key2MeshError(
            f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to --dataset "
            f"{args.dataset} (see `key2mesh evaluate --help`: each option names its datasets)"
        )
