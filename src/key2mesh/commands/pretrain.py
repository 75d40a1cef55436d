"""`key2mesh pretrain`: pre-train Key2Mesh on synthesised MoCap pairs."""

from __future__ import annotations

import argparse
import json

from key2mesh.commands._config import add_config_arguments

HELP = "pre-train the network on MoCap bodies projected through the virtual camera"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, "PretrainConfig")
    p.add_argument("--cache", help="training cache from `key2mesh data prepare`")
    p.add_argument(
        "--out", dest="out_dir", help="output folder (checkpoints, metrics.csv, tensorboard/)"
    )
    p.add_argument("--keypoint-set", help="input keypoint set (default openpose_body25)")
    p.add_argument(
        "--steps",
        help="number of optimisation steps (default: from --epochs)",
    )
    p.add_argument("--epochs", help="epochs over the training frames (paper: 10)")
    p.add_argument("--batch-size", help="batch size (paper: 256)")
    p.add_argument("--lr", help="Adam learning rate (paper: 1e-3)")
    p.add_argument("--lr-gamma", help="StepLR decay factor (official code: 0.8; 1 = constant)")
    p.add_argument("--lr-step", help="steps between LR decays (default: one epoch)")
    p.add_argument("--hidden", help="network width, extractor and critic (paper: 1024)")
    p.add_argument(
        "--val-subjects",
        help="comma-separated subjects held out whole for validation (default cmu_02,cmu_05)",
    )
    p.add_argument(
        "--val-fraction",
        help="share of the frames of sources without subjects held out (default 0.1)",
    )
    p.add_argument(
        "--val-size",
        help="validation samples synthesised from the held-out frames (default 2048)",
    )
    p.add_argument("--val-every", help="validate and checkpoint every N steps")
    p.add_argument(
        "--noise-profile", help="detector-like noise on the inputs: none, detector, strong"
    )
    p.add_argument(
        "--no-pose-augment",
        dest="pose_augment",
        action="store_false",
        default=None,
        help="disable the pose sampler (mirroring, perturbation, limb mixing)",
    )
    p.add_argument("--seed", help="random seed (default 0)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--threads", help="CPU threads for torch")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/last.pt (same result as an uninterrupted run)",
    )
    p.add_argument(
        "--init",
        metavar="CKPT",
        help="start from this checkpoint's weights (fine-tuning; fresh optimizer and schedule)",
    )
    p.add_argument(
        "--ema",
        metavar="DECAY",
        help="validate, save and export an exponential moving average of the weights "
        "(decay per step, e.g. 0.999; default 0 = off)",
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
    from key2mesh.commands._config import merged_config
    from key2mesh.train.pretrain import PretrainConfig, run_pretrain

    flags = {key: getattr(args, key) for key in FLAGS}
    flags["model.hidden"] = flags["model.critic_hidden"] = args.hidden
    flags["synth.noise_profile"] = args.noise_profile or None
    flags["val_subjects"] = args.val_subjects  # "a,b" is split by the option's type
    names = {"model.hidden": "--hidden", "model.critic_hidden": "--hidden"}
    names.update({"synth.noise_profile": "--noise-profile", "pose_augment": "--no-pose-augment"})
    cfg = merged_config(PretrainConfig, args.config, flags, args.set_options, names)
    result = run_pretrain(cfg, resume=args.resume)
    print(json.dumps(result, indent=2, default=float))
    return 0
