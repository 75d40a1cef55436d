"""`key2mesh pretrain`: pre-train Key2Mesh on synthesised MoCap pairs."""

from __future__ import annotations

import argparse
import json
import os

from key2mesh.commands._args import add_checkpoint_argument, add_out_argument
from key2mesh.commands._config import ConfigDefaults, add_config_arguments

HELP = "pre-train the network on MoCap bodies projected through the virtual camera"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ConfigDefaults("train/pretrain.py", "PretrainConfig")
    add_config_arguments(p, "PretrainConfig")
    p.add_argument("--cache", help="training cache from `key2mesh data prepare`")
    add_out_argument(
        p,
        "checkpoints (best.pt, last.pt), metrics.csv, tensorboard/ "
        f"(PretrainConfig default: {d.text('out_dir')})",
        dest="out_dir",
    )
    p.add_argument("--keypoint-set", help=d.help("keypoint_set", "input keypoint set"))
    p.add_argument(
        "--steps", help=d.help("steps", "number of optimisation steps (0: from --epochs)")
    )
    p.add_argument("--epochs", help=d.help("epochs", "epochs over the training frames (paper: 10)"))
    p.add_argument("--batch-size", help=d.help("batch_size", "batch size (paper: 256)"))
    p.add_argument("--lr", help=d.help("lr", "Adam learning rate (paper: 1e-3)"))
    p.add_argument(
        "--lr-gamma",
        help=d.help("lr_gamma", "StepLR decay factor (official code: 0.8; 1 = constant)"),
    )
    p.add_argument("--lr-step", help=d.help("lr_step", "steps between LR decays (0: one epoch)"))
    p.add_argument(
        "--hidden", help=d.help("model.hidden", "network width, extractor and critic (paper: 1024)")
    )
    p.add_argument(
        "--val-subjects",
        help=d.help("val_subjects", "comma-separated subjects held out whole for validation"),
    )
    p.add_argument(
        "--val-fraction",
        help=d.help("val_fraction", "share of the frames of sources without subjects held out"),
    )
    p.add_argument(
        "--val-size",
        help=d.help("val_size", "validation samples synthesised from the held-out frames"),
    )
    p.add_argument("--val-every", help=d.help("val_every", "validate and checkpoint every N steps"))
    p.add_argument(
        "--noise-profile",
        help=d.help(
            "synth.noise_profile", "detector-like noise on the inputs: none, detector, strong"
        ),
    )
    p.add_argument(
        "--no-pose-augment",
        dest="pose_augment",
        action="store_false",
        default=None,
        help="disable the pose sampler (mirroring, perturbation, limb mixing; on when installed)",
    )
    p.add_argument("--seed", help=d.help("seed", "random seed"))
    p.add_argument(
        "--device", help=d.help("device", "cpu, cuda, cuda:N or auto (cuda when available)")
    )
    p.add_argument("--threads", help=d.help("threads", "CPU threads for torch (0: torch's own)"))
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/last.pt (same result as an uninterrupted run)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an --out folder that holds a run (replaces its last.pt, best.pt and "
        "metrics.csv; without it or --resume such a folder is refused)",
    )
    add_checkpoint_argument(
        p,
        "start from this checkpoint's weights, a file or a shipped model name such as "
        "anny-coco17 (fine-tuning; fresh optimizer and schedule)",
        dest="init",
        old=("--init",),
    )
    p.add_argument(
        "--ema",
        metavar="DECAY",
        help=d.help(
            "ema",
            "validate, save and export an exponential moving average of the weights (decay per "
            "step, e.g. 0.999; 0 = off)",
        ),
    )
    p.add_argument(
        "--amp-cpu",
        action="store_true",
        default=None,
        help="bf16 autocast on the CPU (faster on CPUs with AVX512-BF16/AMX; CUDA always uses it)",
    )
    p.add_argument("--stop-after", help=argparse.SUPPRESS)


# flags that set the PretrainConfig field of the same name
FLAGS = (
    "cache",
    "out_dir",
    "keypoint_set",
    "steps",
    "epochs",
    "batch_size",
    "lr",
    "lr_gamma",
    "lr_step",
    "val_every",
    "val_fraction",
    "val_size",
    "pose_augment",
    "seed",
    "device",
    "threads",
    "stop_after",
    "init",
    "ema",
    "amp_cpu",
)


def run(args: argparse.Namespace) -> int:
    from key2mesh.commands._args import output_folder
    from key2mesh.commands._config import merged_config
    from key2mesh.train.pretrain import PretrainConfig, run_pretrain

    flags = {key: getattr(args, key) for key in FLAGS}
    flags["model.hidden"] = flags["model.critic_hidden"] = args.hidden
    flags["synth.noise_profile"] = args.noise_profile or None
    flags["val_subjects"] = args.val_subjects  # "a,b" is split by the option's type
    names = {"model.hidden": "--hidden", "model.critic_hidden": "--hidden"}
    names.update({"synth.noise_profile": "--noise-profile", "pose_augment": "--no-pose-augment"})
    names["init"] = "--checkpoint"
    cfg = merged_config(PretrainConfig, args.config, flags, args.set_options, names)
    output_folder(cfg.out_dir, writes="best.pt, last.pt and metrics.csv")
    result = run_pretrain(cfg, resume=args.resume, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 validated: its result
        print(json.dumps(result, indent=2, default=float))
    return 0
