"""`key2mesh export-model` (old name: `export`): ONNX and/or TorchScript versions of a
checkpoint's network, or a slim checkpoint. (Motion files are written by predict / demo
``--export FORMATS``: "export" on its own is the network.)"""

from __future__ import annotations

import argparse
from pathlib import Path

from key2mesh.commands._args import add_checkpoint_argument, output_file

# largest |onnx - torch| --check accepts (float32 rounding: ~6e-7 on the shipped models)
CHECK_TOLERANCE = 1e-4

HELP = "export a checkpoint's network (with input normalisation) to ONNX and/or TorchScript"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_checkpoint_argument(
        p,
        "checkpoint file, shipped model name (anny-body25, anny-coco17), or the paper's "
        "official best-model.ckpt",
    )
    p.add_argument("old_checkpoint", nargs="?", metavar="CKPT", help=argparse.SUPPRESS)
    p.add_argument("--onnx", metavar="PATH", help="write an ONNX model here")
    p.add_argument("--torchscript", metavar="PATH", help="write a TorchScript model here")
    p.add_argument(
        "--slim",
        metavar="PATH",
        help="write a shippable checkpoint (no optimizer state, float16 weights); the input may "
        "be the paper's official best-model.ckpt, converted to key2mesh's format (SMPL body)",
    )
    p.add_argument(
        "--float32",
        action="store_true",
        help="--slim: keep float32 weights (e.g. to convert an official checkpoint losslessly)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="compare the ONNX outputs with PyTorch at batch 1 and 7; a difference over "
        f"{CHECK_TOLERANCE:g} is an error (needs onnxruntime)",
    )


def _check_onnx(ck, path: Path) -> None:
    """--check: the ONNX model against PyTorch at batch 1 and 7 (the batch axis is dynamic);
    a difference over :data:`CHECK_TOLERANCE` is an error."""
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.export import max_onnx_difference

    diffs = []
    for batch in (1, 7):
        diffs.append(max_onnx_difference(ck, path, batch=batch))
        print(f"max |onnx - torch| at batch {batch} = {diffs[-1]:.2e}")
    if not all(d <= CHECK_TOLERANCE for d in diffs):  # NaN fails too
        worst = max(diffs, key=lambda d: d if d == d else float("inf"))
        raise Key2MeshError(
            f"--check: the ONNX model's outputs differ from PyTorch's by up to {worst:.2e} "
            f"(over {CHECK_TOLERANCE:g}); {path} is not a faithful export"
        )


def run(args: argparse.Namespace) -> int:
    import sys

    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.export import export_onnx, export_torchscript
    from key2mesh.model.checkpoint import load_checkpoint, resolve_checkpoint

    if args.command == "export":
        print("warning: `key2mesh export` is now `key2mesh export-model`", file=sys.stderr)
    if args.old_checkpoint:
        if args.checkpoint:
            raise Key2MeshError("give the checkpoint once: --checkpoint CKPT")
        print("warning: the checkpoint as an argument is deprecated; use --checkpoint CKPT",
              file=sys.stderr)  # fmt: skip
        args.checkpoint = args.old_checkpoint
    if not args.checkpoint:
        raise Key2MeshError("export-model needs --checkpoint CKPT")

    if not (args.onnx or args.torchscript or args.slim):
        raise Key2MeshError(
            "nothing to do: give --onnx PATH, --torchscript PATH and/or --slim PATH"
        )
    if args.check and not args.onnx:
        raise Key2MeshError("--check compares an ONNX export with PyTorch: give --onnx PATH too")
    if args.float32 and not args.slim:
        raise Key2MeshError(
            "--float32 keeps the float32 weights of a --slim checkpoint (ONNX and TorchScript "
            "exports are float32 already): give --slim PATH too, or leave --float32 out"
        )
    from key2mesh.safe_paths import OutputNames

    # the file itself, not the name: `--checkpoint anny-coco17` is a file in the package
    source = resolve_checkpoint(args.checkpoint)
    # never the input, never one file for two outputs (the second would replace the first)
    outputs = OutputNames([source], option="output path")
    for option, out, example in (
        ("--onnx", args.onnx, "model.onnx"),
        ("--torchscript", args.torchscript, "model.pt"),
        ("--slim", args.slim, "slim.pt"),
    ):
        if out:
            output_file(out, option, example=example)  # a folder: refused before any write
            outputs.claim(out, option)
    ck = load_checkpoint(source)
    if args.slim:
        from key2mesh.model.checkpoint import atomic_save, slim_checkpoint

        atomic_save(slim_checkpoint(ck, half=not args.float32), args.slim)
        print(f"wrote {args.slim} ({Path(args.slim).stat().st_size / 1e6:.1f} MB)")
    if args.onnx:
        path = export_onnx(ck, args.onnx)
        print(f"wrote {path} ({Path(path).stat().st_size / 1e6:.1f} MB)")
        if args.check:
            _check_onnx(ck, path)
    if args.torchscript:
        path = export_torchscript(ck, args.torchscript)
        print(f"wrote {path}")
    return 0
