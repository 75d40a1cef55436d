"""`key2mesh data prepare|stats|pose2sim`: build and inspect the MoCap training cache; build the
real-footage benchmark from Pose2Sim's 4-camera demo."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from key2mesh.commands._args import add_deprecated_alias
from key2mesh.commands._config import ConfigDefaults
from key2mesh.options import SEED, from_flags, rule

HELP = "build (prepare) or inspect (stats) the MoCap training cache; build the pose2sim benchmark"
DEFAULT_CACHE = "cache/mocap_anny.npz"
DEFAULT_POSE2SIM = "cache/pose2sim_benchmark.npz"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    prep = sub.add_parser(
        "prepare", help="extract the free MoCap (and optional AMASS) into one training cache"
    )
    d = ConfigDefaults("commands/data.py", "PrepareNumbers")
    prep.add_argument(
        "--cache",
        dest="out",
        default=DEFAULT_CACHE,
        metavar="FILE",
        help="training cache file to write (read by pretrain/adapt --cache) (default: %(default)s)",
    )
    add_deprecated_alias(prep, "--out", "--cache", "out")
    prep.add_argument(
        "--sources",
        default=None,
        help="comma-separated: deepmimic (pybullet wheel), holosoma (climb mocap), amass (needs --amass); "
        "when not given: every free source available",
    )
    prep.add_argument(
        "--amass", nargs="*", help="AMASS .npz files or folders (licensed, user-supplied)"
    )
    prep.add_argument(
        "--bvh",
        nargs="*",
        help="BVH files, folders or .tar.xz/.tar.gz/.zip archives (e.g. CMU's "
        "cgspeed conversion; cgspeed/Daz, CMU-ASF and MotionBuilder joint names)",
    )
    prep.add_argument(
        "--asf-amc",
        nargs="*",
        dest="asf_amc",
        help="Acclaim ASF/AMC files, folders or archives (CMU's original format; <subject>.asf beside the .amc)",
    )
    prep.add_argument(
        "--index",
        help="per-trial table (tab-separated: trial, subject, cmu_fps, tpose_frames) giving "
        "true frame rates and T-pose frames (when not given: INDEX.tsv beside the archive)",
    )
    prep.add_argument(
        "--fps-override",
        nargs="*",
        dest="fps_override",
        metavar="PATTERN=FPS",
        help="true capture rate for trials whose name matches PATTERN, e.g. '60_*=60' '61_*=60'",
    )
    prep.add_argument(
        "--body",
        default="anny",
        choices=["anny", "smpl"],
        help="body model the poses are fitted to (default: %(default)s)",
    )
    prep.add_argument(
        "--smpl-dir", help="SMPL model folder for --body smpl (else $KEY2MESH_SMPL_DIR)"
    )
    prep.add_argument(
        "--max-fps",
        dest="fps",
        help=d.help("fps", "resample clips to at most this frame rate, Hz"),
    )
    add_deprecated_alias(prep, "--fps", "--max-fps", "fps")
    prep.add_argument("--num-shapes", help=d.help("num_shapes", "size of the shape bank"))
    prep.add_argument("--ik-iters", help=d.help("ik_iters", "IK iterations for joint-only sources"))
    prep.add_argument("--seed", help=d.help("seed", "random seed"))
    st = sub.add_parser("stats", help="frames, clips, sources and pose coverage of a cache")
    st.add_argument(
        "cache", nargs="?", default=DEFAULT_CACHE, help="training cache file (default: %(default)s)"
    )
    mv = sub.add_parser(
        "pose2sim",
        help="real-footage benchmark: MediaPipe on Pose2Sim's 4 demo videos, 3D by "
        "triangulation (needs the [detect] extra)",
    )
    mv.add_argument(
        "--benchmark",
        dest="out",
        default=DEFAULT_POSE2SIM,
        metavar="FILE",
        help="benchmark file to write, its development and test parts beside it (FILE_dev.npz, "
        "FILE_test.npz; read by evaluate --dataset, adapt --val) (default: %(default)s)",
    )
    add_deprecated_alias(mv, "--out", "--benchmark", "out")
    mv.add_argument(
        "--max-offset",
        type=int,
        default=6,
        help="largest frame offset searched between cameras (default: %(default)s)",
    )
    mv.add_argument(
        "--offsets", help="fixed frame offsets per camera instead of the search, e.g. 0,0,2,0"
    )
    mv.add_argument(
        "--max-error",
        type=float,
        default=25.0,
        help="largest reprojection error (px) of a view kept (default: %(default)s)",
    )
    mv.add_argument(
        "--min-views",
        type=int,
        default=2,
        help="fewest views an instant needs to be triangulated (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    if args.data_command == "prepare":
        return _prepare(args)
    if args.data_command == "pose2sim":
        return _pose2sim(args)
    return _stats(args)


def _pose2sim(args: argparse.Namespace) -> int:
    from key2mesh.data.benchmark import save_benchmark
    from key2mesh.data.multiview import pose2sim_benchmark
    from key2mesh.errors import Key2MeshError

    try:
        offsets = [int(x) for x in args.offsets.split(",")] if args.offsets else None
    except ValueError:
        raise Key2MeshError(
            f"--offsets {args.offsets!r}: expected one integer per camera, e.g. 0,0,2,0"
        ) from None
    bench, report = pose2sim_benchmark(
        offsets=offsets,
        max_offset=args.max_offset,
        max_error=args.max_error,
        min_views=args.min_views,
    )
    # development / test parts by whole instants (first and second half of the clip): choose
    # defaults on the first, report the second. Split before writing anything, so a set that
    # cannot be split leaves no new benchmark beside the parts of an earlier run.
    parts = bench.split_by_instant(0.5)
    save_benchmark(bench, args.out)
    for line in report.lines():
        print(line)
    print(f"wrote {args.out}: {bench.summary()}")
    out = Path(args.out)
    for part in parts:
        tag = part.name.rsplit("-", 1)[1]
        path = save_benchmark(part, out.with_name(f"{out.stem}_{tag}{out.suffix or '.npz'}"))
        print(f"wrote {path}: {part.summary()} ({tag} part, instants {_span(part)})")
    return 0


def _span(bench) -> str:
    ids = bench.instant_ids()
    return f"{int(ids.min())}-{int(ids.max())}"


@dataclass
class PrepareNumbers:
    """``data prepare``'s numeric flags, checked by :mod:`key2mesh.options` before any work."""

    fps: float = field(default=60.0, metadata=rule(gt=0))
    num_shapes: int = field(default=8192, metadata=rule(ge=1))
    ik_iters: int = field(default=150, metadata=rule(ge=1))
    seed: int = field(default=0, metadata=rule(SEED))


def _prepare(args: argparse.Namespace) -> int:
    num = from_flags(
        PrepareNumbers,
        {k: getattr(args, k) for k in ("fps", "num_shapes", "ik_iters", "seed")},
        {"fps": "--max-fps"},
    )
    from key2mesh.body import load_body_model
    from key2mesh.body.traits import body_traits
    from key2mesh.data.prepare import prepare_cache  # noqa: I001

    body = load_body_model(args.body, **body_traits(args.body).model_dir_options(args.smpl_dir))
    from key2mesh.data.prepare import FREE_SOURCES

    sources = (
        tuple(s.strip() for s in args.sources.split(",") if s.strip())
        if args.sources
        else FREE_SOURCES
    )
    if args.amass and "amass" not in sources:
        sources = sources + ("amass",)
    bank, rep = prepare_cache(
        body,
        args.out,
        sources,
        args.amass,
        num.fps,
        num.num_shapes,
        num.seed,
        num.ik_iters,
        bvh=args.bvh,
        asf_amc=args.asf_amc,
        index=args.index,
        fps_override=args.fps_override,
    )
    per = ", ".join(f"{k} {v}" for k, v in rep.per_source.items())
    print(
        f"wrote {args.out}: {rep.frames} frames from {rep.clips} clips ({per}); "
        f"{rep.skipped_files} files skipped; {rep.seconds:.0f} s"
    )
    for src, err in rep.ik_error_mm.items():
        print(f"  IK fit of {src}: mean joint error {err:.1f} mm")
    for path, reason in rep.skipped:
        print(f"  skipped {path}: {reason}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    import numpy as np

    from key2mesh.data.cache import PoseBank

    bank = PoseBank.load(Path(args.cache))
    counts = np.bincount(bank.clip_index, minlength=len(bank.clip_names))
    print(
        f"{args.cache}: {bank.num_frames} frames, {len(bank.clip_names)} clips, body {bank.body}, "
        f"{len(bank.shapes)} shapes; retarget version {bank.meta.get('retarget_version', 1)}"
    )
    by_source: dict[str, list[int]] = {}
    for src, n in zip(bank.clip_sources or ["?"] * len(counts), counts):
        by_source.setdefault(src, []).append(int(n))
    for src, ns in by_source.items():
        print(
            f"  {src:<10} {sum(ns):>7} frames in {len(ns):>3} clips (min {min(ns)}, max {max(ns)})"
        )
    train, val = bank.split()
    sets = bank.validation_sets()
    parts = ", ".join(f"{len(v)} from held-out {k}" for k, v in sets.items())
    print(
        f"  held-out split (whole clips / whole subjects): {len(train)} train / {len(val)} validation frames ({parts})"
    )
    if bank.clip_subjects and any(bank.clip_subjects):
        subj = sorted({s for s in bank.clip_subjects if s})
        print(f"  {len(subj)} subjects: {', '.join(subj)}")
    try:
        from key2mesh.data.mocap.sampler import pose_coverage

        print(f"  pose coverage: {pose_coverage(bank.rotmats):.3f}")
    except ImportError:
        pass
    angles = np.degrees(
        np.arccos(np.clip((np.trace(bank.rotmats[:, 1:], axis1=-2, axis2=-1) - 1) / 2, -1, 1))
    )
    print(
        f"  joint rotation angle from rest: mean {angles.mean():.1f}°, 95th percentile {np.percentile(angles, 95):.1f}°"
    )
    return 0
