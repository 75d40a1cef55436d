"""Before/after equality of a benchmark's numbers (issue #23: "behaviour must not change").

Two outputs of the same run, made before and after a change, are read into ``key -> value`` and
every key both hold is listed with its two values, whether they are equal (exactly, as written)
and their absolute difference; keys only one side holds are named. Timing keys (speed-ups, ms,
throughput) are left out: they differ from run to run.

    .venv/bin/python benchmarks/equality.py compare \\
        --pair compare_result result BEFORE.log AFTER.log \\
        [--pair NAME KIND BEFORE AFTER ...] [--notes NOTES.md] [--record compare_equality]
    .venv/bin/python benchmarks/equality.py dump-errors --dataset cache/pose2sim_benchmark_test.npz \\
        --checkpoint anny-coco17 --out ERRORS.npz

``KIND`` says how a file is read:

- ``result``: the last ``RESULT key=value ...`` line of a log (a value ``a,b`` is compared item
  by item, as ``key[0]``, ``key[1]``);
- ``rows``: benchmarks/compare.py's printed rows ``input: ('method', PA, MPJPE, ms, ms, re-projection,
  median)`` at full precision (an ``Interval(mean=...)`` counts by its mean; the method named
  without its bracketed note, which changed wording between commits);
- ``json``: a JSON object such as ``key2mesh evaluate --json`` writes (nested keys joined by ``.``,
  list items as ``key[i]``);
- ``npz``: arrays such as ``dump-errors`` writes (equal: identical arrays; difference: max |a - b|).

``dump-errors`` writes the per-sample errors (mm), predicted rotations and shapes of
``key2mesh evaluate``'s benchmark path with calls that exist at old and new commits alike, so it
can run against an old checkout (its ``src`` first on ``PYTHONPATH``). The last line is
``RESULT keys=N equal=M max_abs_diff=X`` of the first ``--pair`` (the check itself), then the
same per pair (``NAME_keys=...``), the others being the diagnostics that explain it.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

TIMING = r"speedup|_ms$|(^|_)time|per_s"
ROW_FIELDS = ("pa_mpjpe", "mpjpe", "batch1_ms", "batch_all_ms", "reproj", "pa_median")
_ROW = re.compile(r"^(\w+): (\(.*\))\s*$")
_INTERVAL = re.compile(r"Interval\(mean=([^,]+), low=[^,]+, high=[^,]+, level=[^)]+\)")
_NOTE = re.compile(r"\s*\([^)]*\)")


def _number(text: str):
    """``text`` as a float when it is one, else the text itself."""
    try:
        return float(text)
    except ValueError:
        return text


def read_result(path: Path) -> dict[str, object]:
    """The last ``RESULT`` line of a log → key → number or text; ``a,b`` values item by item."""
    lines = [x for x in path.read_text().splitlines() if x.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"{path}: no 'RESULT key=value ...' line")
    out: dict[str, object] = {}
    for item in lines[-1].split()[1:]:
        key, _, value = item.partition("=")
        parts = value.split(",")
        if len(parts) == 1:
            out[key] = _number(value)
        else:
            out.update({f"{key}[{i}]": _number(p) for i, p in enumerate(parts)})
    return out


def read_rows(path: Path) -> dict[str, object]:
    """compare.py's printed per-method rows → ``input:method:field`` → float (full precision)."""
    out: dict[str, object] = {}
    for line in path.read_text().splitlines():
        m = _ROW.match(line)
        if not m:
            continue
        row = ast.literal_eval(_INTERVAL.sub(r"\1", m.group(2)))
        method = _NOTE.sub("", row[0])
        for field, value in zip(ROW_FIELDS, row[1:]):
            out[f"{m.group(1)}:{method}:{field}"] = float(value)
    if not out:
        raise SystemExit(f"{path}: no compare.py row ('input: (method, ...)')")
    return out


def read_json(path: Path) -> dict[str, object]:
    """A JSON object flattened: nested keys joined by '.', list items as ``key[i]``."""
    out: dict[str, object] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        else:
            out[prefix] = value

    walk("", json.loads(path.read_text()))
    return out


def read_npz(path: Path) -> dict[str, object]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


READERS = {"result": read_result, "rows": read_rows, "json": read_json, "npz": read_npz}


def rows_differing(a: np.ndarray, b: np.ndarray) -> str:
    """'k/N rows' of two same-shape arrays: how many entries along the first axis differ."""
    if a.ndim == 0:
        return ""
    differ = (a != b).reshape(len(a), -1).any(1)
    return f" ({int(differ.sum())}/{len(a)} rows)"


def compare_values(a, b) -> tuple[bool, float | None]:
    """(exactly equal, absolute difference or None for text) of two values of one key; arrays:
    the largest difference of any element."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False, math.inf
        if a.dtype.kind in "fiub" and b.dtype.kind in "fiub":
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            return bool(np.array_equal(a, b)), float(diff.max()) if diff.size else 0.0
        return bool(np.array_equal(a, b)), None
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    if numeric:
        return a == b, abs(float(a) - float(b))
    return a == b, None


def _show(value) -> str:
    if isinstance(value, np.ndarray):
        return f"array {value.dtype} {tuple(value.shape)}"
    if isinstance(value, float):
        return f"{value:g}" if value.is_integer() else repr(value)
    return json.dumps(value) if value is None or isinstance(value, str) else str(value)


def compare_pair(name: str, before: dict, after: dict, timing: re.Pattern) -> dict:
    """Print the table of one pair; return its counts."""
    skipped = sorted(k for k in set(before) | set(after) if timing.search(k))
    shared = [k for k in before if k in after and not timing.search(k)]
    only_before = [k for k in before if k not in after and not timing.search(k)]
    only_after = [k for k in after if k not in before and not timing.search(k)]
    print(f"### {name}\n")
    print("| key | before | after | equal | abs diff |")
    print("|---|---|---|---|---|")
    equal, max_diff = 0, 0.0
    for key in shared:
        same, diff = compare_values(before[key], after[key])
        equal += same
        if diff is not None:
            max_diff = max(max_diff, diff)
        d = "" if diff is None else f"{diff:.3g}"
        if isinstance(before[key], np.ndarray) and not same and diff != math.inf:
            d += rows_differing(np.asarray(before[key]), np.asarray(after[key]))
        print(
            f"| {key} | {_show(before[key])} | {_show(after[key])} | {'yes' if same else 'NO'} | {d} |"
        )
    print()
    print(f"- shared non-timing keys: {len(shared)}, equal: {equal}, max abs diff: {max_diff:.3g}")
    print(
        f"- timing keys left out: {len(skipped)}" + (f" ({', '.join(skipped)})" if skipped else "")
    )
    for label, keys in (("only before", only_before), ("only after", only_after)):
        print(f"- {label}: {len(keys)}" + (f" ({', '.join(keys)})" if keys else ""))
    print()
    return {"keys": len(shared), "equal": equal, "max_abs_diff": max_diff}


def run_compare(a: argparse.Namespace) -> None:
    if a.record:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _common import record_results

        record_results(a.record, "Before/after equality of benchmark numbers", markdown=True)
    if a.notes:
        print(Path(a.notes).read_text().rstrip() + "\n")
    timing = re.compile(a.timing)
    totals: dict[str, dict] = {}
    for name, kind, before, after in a.pair:
        if kind not in READERS:
            raise SystemExit(f"--pair {name}: kind {kind!r} is not one of {', '.join(READERS)}")
        read = READERS[kind]
        totals[name] = compare_pair(name, read(Path(before)), read(Path(after)), timing)
    first = next(iter(totals.values()))
    per_pair = " ".join(
        f"{n}_keys={t['keys']} {n}_equal={t['equal']} {n}_max_abs_diff={t['max_abs_diff']:.3g}"
        for n, t in totals.items()
    )
    print(
        f"RESULT keys={first['keys']} equal={first['equal']} "
        f"max_abs_diff={first['max_abs_diff']:.3g} {per_pair}"
    )


def run_dump_errors(a: argparse.Namespace) -> None:
    """Per-sample errors (mm), rotations and shapes of ``a.checkpoint`` on a benchmark .npz
    (``key2mesh evaluate``'s path) or on compare.py's held-out MoCap inputs, with calls present
    before and after #23, from the installed or the PYTHONPATH package."""
    import torch

    import key2mesh
    from key2mesh.eval.metrics import PROTOCOLS
    from key2mesh.inference.predictor import Key2Mesh

    torch.set_num_threads(a.threads)
    print(f"key2mesh from {key2mesh.__file__}")
    protocol = PROTOCOLS[a.protocol]
    model = Key2Mesh.from_pretrained(a.checkpoint, device="cpu", full_mesh=False)
    if a.no_ensemble_clamp:  # the ensemble mean as before 650e3df (members' shapes unclamped)
        model.net.clamp_shape = lambda s: s
    if a.dataset == "mocap-heldout":
        from key2mesh.data.heldout import mocap_samples
        from key2mesh.eval.evaluate import score_bodies

        # an ensemble: frames every member held out (a package before that has no member list)
        held = getattr(model, "member_checkpoints", None) or model.checkpoint
        batch = mocap_samples(a.cache, held, a.profile, n=a.num, seed=7, split="val")
        pred = model.predict(batch.keypoints2d, batch.confidence, mesh=False)
        errors = score_bodies(
            model.body, pred.rotmats, pred.shape, model.body, batch.rotmats, batch.shape, protocol
        )
        keep = torch.ones(len(pred.shape), dtype=torch.bool)  # compare.py scores every row
    else:
        from key2mesh.data.datasets import load_benchmark
        from key2mesh.eval.benchmarks import ground_truth, score_parameters

        bench = load_benchmark(a.dataset)
        gj, gset, gv = ground_truth(bench, protocol, None, model.device, None)
        pred = model.predict(
            bench.keypoints2d, bench.confidence, keypoint_set=bench.keypoint_set, mesh=False
        )
        errors = score_parameters(model.body, pred.rotmats, pred.shape, gj, gset, gv, protocol)
        keep = pred.valid.cpu()
    arrays = {k: v[keep].numpy() for k, v in errors.items()}
    arrays.update(rotmats=pred.rotmats.numpy(), shape=pred.shape.numpy(), valid=keep.numpy())
    if hasattr(model.net, "members"):  # an ensemble: each member's own shape too
        src = batch if a.dataset == "mocap-heldout" else bench
        kset = None if a.dataset == "mocap-heldout" else bench.keypoint_set
        inputs, _ = model.normalize(src.keypoints2d, src.confidence, kset)
        with torch.no_grad():
            for i, m in enumerate(model.net.members):
                arrays[f"member{i}_shape"] = m.predict(inputs)[1].numpy()
    np.savez(a.out, **arrays)
    print(f"wrote {a.out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="compare before/after outputs key by key")
    c.add_argument(
        "--pair",
        nargs=4,
        action="append",
        required=True,
        metavar=("NAME", "KIND", "BEFORE", "AFTER"),
        help=f"a name, how to read the files ({', '.join(READERS)}), the before and after file",
    )
    c.add_argument(
        "--timing", default=TIMING, help="regex of the timing keys left out (default: %(default)s)"
    )
    c.add_argument("--notes", help="a markdown file printed above the tables (commits, commands)")
    c.add_argument(
        "--record",
        metavar="NAME",
        help="also write the output into benchmarks/results/NAME.md (with command, commit, machine)",
    )
    d = sub.add_parser("dump-errors", help="per-sample errors of evaluate's benchmark path → .npz")
    d.add_argument(
        "--dataset",
        required=True,
        help="a benchmark .npz (e.g. cache/pose2sim_benchmark_test.npz) or mocap-heldout "
        "(compare.py's held-out MoCap inputs: seed 7, split val)",
    )
    d.add_argument(
        "--cache", default="cache/mocap_all.npz", help="mocap-heldout: default %(default)s"
    )
    d.add_argument("--profile", default="detector", help="mocap-heldout noise: default %(default)s")
    d.add_argument(
        "--num", type=int, default=512, help="mocap-heldout samples: default %(default)s"
    )
    d.add_argument(
        "--no-ensemble-clamp",
        action="store_true",
        help="average an ensemble's shapes unclamped (as before 650e3df); new package only",
    )
    d.add_argument("--checkpoint", default="anny-coco17", help="default: %(default)s")
    d.add_argument(
        "--protocol", default="key2mesh", choices=["key2mesh", "spin"], help="default: %(default)s"
    )
    d.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)"
    )
    d.add_argument("--out", required=True, help="the .npz to write")
    a = p.parse_args()
    run_compare(a) if a.command == "compare" else run_dump_errors(a)


if __name__ == "__main__":
    main()
