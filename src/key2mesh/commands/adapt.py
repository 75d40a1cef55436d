"""`key2mesh adapt`: label-free adaptation of a pre-trained model to your detections."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from key2mesh.commands._args import add_checkpoint_argument, add_out_argument
from key2mesh.commands._config import ConfigDefaults, add_config_arguments

HELP = "adapt a pre-trained model to unlabelled target detections (WDGRL critic, no 3D labels)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ConfigDefaults("train/adapt.py", "AdaptConfig")
    add_config_arguments(p, "AdaptConfig")
    add_checkpoint_argument(
        p,
        "the pre-trained checkpoint to adapt (from `key2mesh pretrain`, or a shipped name such "
        "as anny-coco17)",
        dest="source",
        old=("--source",),
    )
    p.add_argument(
        "--target",
        nargs="+",
        required=True,
        help="target detections: OpenPose JSON folders/files, COCO JSON, .npz/.npy, or "
        "'synthetic:PROFILE' (held-out MoCap clips with a detector-like noise profile, labelled)",
    )
    p.add_argument(
        "--target-set", help="keypoint set of the target files when it cannot be inferred"
    )
    p.add_argument(
        "--multiview",
        action="store_true",
        help="the target holds synchronised views of one person: one file whose frame names are "
        "CAMERA/FRAME (e.g. `key2mesh data pose2sim`), or one file per camera with frame t of every "
        "file the same instant. Enables the multi-view consistency term L_mv (--losses ...+mv, "
        "beyond the paper)",
    )
    p.add_argument(
        "--frame-offsets",
        help="with --multiview and one file per camera: comma-separated frame offsets, camera i's "
        "frame t + offset_i showing the same instant as camera 1's frame t (as `key2mesh data "
        "pose2sim` reports them), e.g. 0,0,2,0",
    )
    p.add_argument("--cache", help="MoCap training cache (source-domain samples)")
    p.add_argument(
        "--val",
        help="labelled validation: a benchmark file (e.g. `key2mesh data pose2sim`, 12 limb joints) "
        "or 'synthetic:PROFILE' (held-out MoCap with a noise profile); selects by PA-MPJPE. "
        "Without it: the re-projection error on held-out target detections (label-free)",
    )
    p.add_argument(
        "--selection",
        choices=["guarded", "target"],
        help=d.help(
            "selection",
            "label-free choice of best.pt: guarded (a step must lower the target criterion by "
            "--min-gain while the source domain's held-out error rises by at most "
            "--source-tolerance, else the pre-trained model is kept) or target (the criterion alone)",
        ),
    )
    p.add_argument(
        "--source-tolerance",
        help=d.help(
            "source_tolerance",
            "guarded selection: largest relative rise of the held-out MoCap error",
        ),
    )
    p.add_argument(
        "--min-gain",
        help=d.help(
            "min_gain", "guarded selection: smallest relative fall of the target criterion"
        ),
    )
    p.add_argument(
        "--monitor",
        help="a labelled benchmark file whose errors are only logged (val_mon_* in metrics.csv), "
        "never used to select: to study the label-free selection",
    )
    add_out_argument(
        p,
        "checkpoints (best.pt, last.pt), metrics.csv, summary.json "
        f"(AdaptConfig default: {d.text('out_dir')})",
        dest="out_dir",
    )
    p.add_argument(
        "--losses",
        choices=["2d", "2d+wd", "2d+wd+reg", "2d+mv", "2d+wd+reg+mv"],
        help="loss ablation of the paper (when not given: all three terms, 2d+wd+reg); +mv adds "
        "the multi-view consistency term (needs --multiview; --multiview alone uses 2d+mv)",
    )
    p.add_argument("--steps", help=d.help("steps", "adaptation steps (0: from --epochs)"))
    p.add_argument("--epochs", help=d.help("epochs", "epochs over the target detections"))
    p.add_argument("--batch-size", help=d.help("batch_size", "target detections per step"))
    p.add_argument("--lr", help=d.help("lr", "learning rate of the adapted extractor"))
    p.add_argument(
        "--critic-steps",
        help=d.help(
            "critic_steps", "k critic steps per adaptation step (paper 3, official code 10)"
        ),
    )
    p.add_argument("--gamma", help=d.help("gamma", "gradient-penalty weight (official code 50)"))
    p.add_argument("--critic-lr", help=d.help("critic_lr", "critic learning rate"))
    p.add_argument(
        "--select-every",
        help=d.help("select_every", "steps between model-selection checks (and checkpoints)"),
    )
    p.add_argument(
        "--min-keypoints",
        help=d.help("min_keypoints", "drop target detections with fewer confident keypoints"),
    )
    p.add_argument(
        "--holdout-fraction",
        help=d.help("holdout_fraction", "target detections held out for the label-free selection"),
    )
    p.add_argument(
        "--bn",
        choices=["frozen", "batch"],
        help=d.help(
            "bn",
            "BatchNorm of the adapted extractor: F_pt's statistics (frozen) or batch statistics",
        ),
    )
    p.add_argument(
        "--dropout",
        action="store_true",
        default=None,
        help="keep dropout on in the adapted extractor (off when not given: L_reg then sees no "
        "dropout noise)",
    )
    p.add_argument("--seed", help=d.help("seed", "random seed"))
    p.add_argument(
        "--device", help=d.help("device", "cpu, cuda, cuda:N or auto (cuda when available)")
    )
    p.add_argument("--threads", help=d.help("threads", "CPU threads for torch (0: torch's own)"))
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an --out folder that holds an earlier adapt run (replaces its "
        "best.pt, last.pt, metrics.csv and summary.json; without it such a folder is refused)",
    )


RUN_RESULTS = ("best.pt", "last.pt", "summary.json")  # what marks a folder as holding a run
RUN_FILES = (*RUN_RESULTS, "metrics.csv")  # everything an adapt run writes


def _earlier_run(out: Path) -> list[str]:
    """The files of an earlier adapt run in ``out`` (its checkpoints or summary)."""
    return [n for n in RUN_RESULTS if (out / n).exists()]


def _non_negative(groups):
    """Instant ids shifted to start at 0 (offsets can make them negative; -1 means no group);
    no ids (views without a detection) stay none."""
    return groups - min(0, int(groups.min())) if len(groups) else groups


def load_targets(
    paths: list[str],
    checkpoint,
    cache: str,
    keypoint_set: str | None = None,
    multiview: bool = False,
    frame_offsets: list[int] | None = None,
    min_keypoints: int | None = None,
):
    """Read target detections from files (any supported reader) into one TargetSet.

    ``multiview``: group synchronised views (``TargetSet.groups``). One file: by the instant ids
    it stores (``key2mesh data pose2sim`` writes them), else by the CAMERA/FRAME frame names, the
    frame numbers corrected by ``frame_offsets`` (one per camera, in order of appearance). Several
    files (one per camera): by frame index, file i's frame t + offset_i being the instant of the
    first file's frame t. Each view must hold at most one person per frame."""
    import numpy as np
    import torch

    from key2mesh.data.multiview import instant_groups, stored_instants
    from key2mesh.errors import Key2MeshError
    from key2mesh.keypoints.io import MIN_KEYPOINTS
    from key2mesh.train.adapt import prepare_target, synthetic_target

    min_keypoints = MIN_KEYPOINTS if min_keypoints is None else min_keypoints
    if len(paths) == 1 and paths[0].startswith("synthetic:"):
        if multiview:
            raise Key2MeshError("--multiview needs detection files, not a synthetic target")
        return synthetic_target(
            cache, checkpoint, paths[0].split(":", 1)[1], split="train", seed=11
        )
    from key2mesh.keypoints.io import read_detections

    if frame_offsets is not None and not multiview:
        raise Key2MeshError("--frame-offsets needs --multiview")
    if frame_offsets is not None and len(paths) > 1 and len(frame_offsets) != len(paths):
        raise Key2MeshError(
            f"--frame-offsets needs one offset per target file ({len(frame_offsets)} for {len(paths)})"
        )
    kps, confs, groups = [], [], []
    for i, path in enumerate(paths):
        det = read_detections(path, keypoint_set=keypoint_set).to(checkpoint.keypoint_set)
        kp, conf, index = det.flatten()
        kps.append(torch.as_tensor(kp))
        confs.append(torch.as_tensor(conf))
        if not multiview:
            continue
        frames = index[:, 0]
        if len(np.unique(frames)) != len(frames):
            raise Key2MeshError(
                f"{path}: --multiview needs one person per frame in each view; "
                f"{len(frames) - len(np.unique(frames))} frames hold more"
            )
        names = [det.frame_names[f] for f in frames]
        if len(paths) > 1:
            cameras = {n.rpartition("/")[0] for n in names}
            if len(cameras) > 1:
                raise Key2MeshError(
                    f"{path}: holds CAMERA/FRAME views of {len(cameras)} cameras; with several "
                    "--target files each must be one camera (or pass the one multi-camera file alone)"
                )
            groups.append(frames.astype(np.int64) - (frame_offsets or [0] * len(paths))[i])
            continue
        stored = stored_instants(path)
        if stored is not None and frame_offsets is None:
            groups.append(stored[frames])
            continue
        offsets = None
        if frame_offsets is not None:
            cameras = list(dict.fromkeys(n.rpartition("/")[0] for n in names))
            if len(frame_offsets) != len(cameras):
                raise Key2MeshError(
                    f"--frame-offsets: {len(frame_offsets)} offsets for the {len(cameras)} "
                    f"cameras of {path} ({', '.join(cameras)})"
                )
            offsets = dict(zip(cameras, frame_offsets))
        groups.append(instant_groups(names, offsets))
    if multiview and len(paths) == 1 and len(np.unique(groups[0])) == len(groups[0]):
        raise Key2MeshError(
            f"{paths[0]}: --multiview found no instant seen by two views (frame names CAMERA/FRAME)"
        )
    return prepare_target(
        torch.cat(kps),
        torch.cat(confs),
        checkpoint.normalization,
        min_keypoints,
        name=",".join(paths),
        groups=torch.from_numpy(_non_negative(np.concatenate(groups))) if multiview else None,
    )


# flags that set the AdaptConfig field of the same name
FLAGS = (
    "source",
    "cache",
    "out_dir",
    "steps",
    "epochs",
    "batch_size",
    "lr",
    "critic_steps",
    "gamma",
    "critic_lr",
    "select_every",
    "min_keypoints",
    "holdout_fraction",
    "bn",
    "dropout",
    "selection",
    "source_tolerance",
    "min_gain",
    "seed",
    "device",
    "threads",
)


def run(args: argparse.Namespace) -> int:
    from key2mesh.commands._args import output_folder
    from key2mesh.commands._config import merged_config
    from key2mesh.errors import Key2MeshError
    from key2mesh.model.checkpoint import load_checkpoint, resolve_checkpoint
    from key2mesh.train.adapt import (
        ABLATIONS,
        MULTIVIEW_LOSSES,
        AdaptConfig,
        benchmark_target,
        check_adapt_options,
        run_adapt,
        synthetic_target,
    )

    flags = {key: getattr(args, key) for key in FLAGS}
    flags["weights"] = ABLATIONS[args.losses].to_dict() if args.losses else None
    names = {"source": "--checkpoint"}
    cfg = merged_config(AdaptConfig, args.config, flags, args.set_options, names)
    if args.multiview and args.losses is None and cfg.weights.mv == 0:
        # --multiview alone: L2D^t + L_mv (chosen on the pose2sim development part)
        cfg.weights = replace(ABLATIONS[MULTIVIEW_LOSSES])  # a copy
    check_adapt_options(cfg)  # before the targets are read
    if cfg.out_dir:
        output_folder(cfg.out_dir, writes="best.pt, last.pt, metrics.csv and summary.json")
        earlier = _earlier_run(Path(cfg.out_dir))
        if earlier and not args.overwrite:  # its models would sit beside this run's metrics
            raise Key2MeshError(
                f"{cfg.out_dir} already holds an adapt run ({', '.join(earlier)}); start it over "
                "with --overwrite (replaces them) or choose another --out"
            )
    for option, value in (("--checkpoint", cfg.source), ("--cache", cfg.cache)):
        if not value:
            raise Key2MeshError(f"adapt needs {option} (on the command line or in --config)")
    if cfg.threads:  # before the targets are built (synthetic: and --val pose 4,096 bodies each)
        import torch

        torch.set_num_threads(cfg.threads)
    cfg.source = str(resolve_checkpoint(cfg.source))
    if cfg.out_dir and args.overwrite:  # it would delete the model it is about to adapt
        replaced = {(Path(cfg.out_dir) / name).resolve(): name for name in RUN_FILES}
        if Path(cfg.source).resolve() in replaced:
            raise Key2MeshError(
                f"--checkpoint {cfg.source} is the {replaced[Path(cfg.source).resolve()]} that "
                f"--overwrite replaces in --out {cfg.out_dir}; choose another --out"
            )
    ck = load_checkpoint(cfg.source)
    offsets = None
    if args.frame_offsets:
        try:
            offsets = [int(v) for v in args.frame_offsets.split(",")]
        except ValueError:
            raise Key2MeshError(
                f"--frame-offsets expects integers like 0,0,2,0, got {args.frame_offsets!r}"
            ) from None
    target = load_targets(
        args.target,
        ck,
        cfg.cache,
        args.target_set,
        args.multiview,
        frame_offsets=offsets,
        min_keypoints=cfg.min_keypoints,
    )
    print(
        f"target: {len(target)} detections kept, {target.dropped} dropped "
        f"(< {cfg.min_keypoints} keypoints)"
    )
    validation = None
    if args.val:
        if args.val.startswith("synthetic:"):
            validation = synthetic_target(cfg.cache, ck, args.val.split(":", 1)[1], split="val")
        else:
            validation = benchmark_target(args.val, ck, cfg.min_keypoints)
        print(
            f"validation: {len(validation)} labelled samples from {args.val} (model selection by PA-MPJPE)"
        )
    monitor = benchmark_target(args.monitor, ck, cfg.min_keypoints) if args.monitor else None
    if cfg.out_dir and args.overwrite:  # the inputs are ready: the earlier run goes now
        for name in RUN_FILES:
            (Path(cfg.out_dir) / name).unlink(missing_ok=True)
    result = run_adapt(cfg, target, validation, monitor=monitor)
    print(json.dumps(result, indent=2, default=float))
    print(result["verdict"])  # which model best.pt is, and why (also in summary.json)
    return 0
