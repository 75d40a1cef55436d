"""Property-based tests of every file reader: random bytes, mutated valid files (byte flips,
truncation, deleted/duplicated lines, numbers swapped for text) and edited NumPy archives either
read into a result that holds finite values of the documented shapes, or raise a one-line
:class:`~key2mesh.errors.Key2MeshError`. Any other exception (IndexError, KeyError, ValueError,
BadZipFile, UnicodeDecodeError, ...) fails the test with the input that caused it."""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from key2mesh.data.benchmark import BenchmarkSet, load_benchmark_file, save_benchmark
from key2mesh.data.cache import PoseBank
from key2mesh.data.mocap.asf_amc import asf_amc_joint_positions, parse_amc, parse_asf, read_asf_amc
from key2mesh.data.mocap.bvh import forward_kinematics, read_bvh
from key2mesh.errors import Key2MeshError
from key2mesh.keypoints.io import Detections, read_detections
from key2mesh.keypoints.sets import num_keypoints

# 60 examples a test keeps the file fast; KEY2MESH_PROPERTY_EXAMPLES=5000 searches harder.
EXAMPLES = int(os.environ.get("KEY2MESH_PROPERTY_EXAMPLES", "60"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _refused_or(read, *args):
    """``read(*args)``, or None when it refuses the input with a one-line Key2MeshError."""
    try:
        return read(*args)
    except Key2MeshError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message, repr(message)
        return None


# ----------------------------------------------------------------------------------- mutations

_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# What a number may be replaced by: text, JSON values of other types, non-finite and huge values,
# and characters that str.isdigit() accepts but int() does not.
_SWAPS = (
    b"abc",
    b"",
    b"nan",
    b"NaN",
    b"-inf",
    b"Infinity",
    b"1e999",
    b"-1e400",
    b"1e308",
    b"-1e308",
    b"1e-320",
    b"null",
    b"true",
    b'"7"',
    b"[]",
    b"{}",
    b"[1, 2]",
    b'{"a": 1}',
    b"0",
    b"-1",
    b"-0",
    b"1.5",
    b"1e30",
    b"123456789012345678901234567890",
    b"\xff\xfe",
    b"\xc2\xb2",
    b"\xe2\x91\xa0",
    b"\x00",
)
_OPS = ("flip", "truncate", "delete_line", "duplicate_line", "swap_number", "insert")


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    """``valid`` after one to three random edits."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(_OPS))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif op in ("delete_line", "duplicate_line"):
            lines = bytes(data).splitlines(keepends=True)
            if lines:
                i = draw(st.integers(0, len(lines) - 1))
                lines[i : i + 1] = [] if op == "delete_line" else [lines[i], lines[i]]
                data = bytearray(b"".join(lines))
        elif op == "swap_number":
            spans = [m.span() for m in _NUMBER.finditer(data)]
            if spans:
                a, b = draw(st.sampled_from(spans))
                data[a:b] = draw(st.sampled_from(_SWAPS))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def random_bytes(*prefixes: bytes):
    """Arbitrary bytes, some starting like a real file (so they get past the first check)."""
    return st.tuples(st.sampled_from((b"", *prefixes)), st.binary(max_size=600)).map(
        lambda t: t[0] + t[1]
    )


_DTYPES = st.sampled_from(
    [
        np.float32,
        np.float64,
        np.float16,
        np.int64,
        np.int8,
        np.uint8,
        np.bool_,
        np.complex64,
        np.dtype("U4"),
        np.dtype("S3"),
    ]
)
_SCALARS = (
    np.nan,
    np.inf,
    -np.inf,
    -1,
    0,
    1,
    2,
    1e30,
    2**62,
    -(2**62),
    "x",
    "",
    "coco17",
    "smpl24",
    "h36m17",
    "{}",
    "[]",
    '{"a": 1}',
    "null",
    True,
    False,
)


def any_array(shape=None):
    shapes = (
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3)
        if shape is None
        else st.just(shape)
    )
    return hnp.arrays(_DTYPES, shapes)


@st.composite
def edited_arrays(
    draw, base: dict[str, np.ndarray], extra_keys: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """``base`` with one to three entries dropped or replaced by arrays of other dtypes/shapes/values."""
    arrays = dict(base)
    keys = sorted(set(base) | set(extra_keys))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(keys))
        how = draw(st.sampled_from(("drop", "random", "same_shape", "scalar", "list_of_scalar")))
        if how == "drop":
            arrays.pop(key, None)
        elif how == "random":
            arrays[key] = draw(any_array())
        elif how == "same_shape":
            arrays[key] = draw(any_array(np.shape(base.get(key, np.zeros(2)))))
        else:
            value = np.asarray(draw(st.sampled_from(_SCALARS)))
            arrays[key] = value if how == "scalar" else value[None].repeat(draw(st.integers(0, 3)))
    return arrays


def _npz_bytes(arrays: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------- detections


def _xyc(rng: np.random.Generator, k: int) -> np.ndarray:
    xyc = np.stack(
        [rng.uniform(0, 640, k), rng.uniform(0, 480, k), rng.uniform(0.2, 1, k)], 1
    ).round(2)
    xyc[2] = 0  # one missing point
    return xyc


def _openpose_json() -> bytes:
    rng = np.random.default_rng(1)
    people = [
        {
            "person_id": [i],
            "pose_keypoints_2d": _xyc(rng, 25).ravel().tolist(),
            "face_keypoints_2d": [],
        }
        for i in range(2)
    ]
    return json.dumps({"version": 1.3, "people": people}, indent=1).encode()


def _coco_results_json() -> bytes:
    rng = np.random.default_rng(2)
    entries = [
        {
            "image_id": i // 2,
            "category_id": 1,
            "keypoints": _xyc(rng, 17).ravel().tolist(),
            "score": 0.9,
            "track_id": i % 2,
        }
        for i in range(4)
    ]
    return json.dumps(entries, indent=1).encode()


def _coco_dataset_json() -> bytes:
    rng = np.random.default_rng(3)
    data = {
        "images": [
            {"id": i, "file_name": f"img_{i}.jpg", "width": 640, "height": 480} for i in range(2)
        ],
        "annotations": [
            {
                "id": i,
                "image_id": i,
                "category_id": 1,
                "iscrowd": 0,
                "num_keypoints": 16,
                "keypoints": _xyc(rng, 17).ravel().tolist(),
            }
            for i in range(2)
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(17)]}],
    }
    return json.dumps(data, indent=1).encode()


JSON_FILES = {
    "openpose": _openpose_json(),
    "coco-results": _coco_results_json(),
    "coco-dataset": _coco_dataset_json(),
}


def _detections_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    kp = rng.uniform(0, 500, (3, 2, 25, 2)).astype(np.float32)
    return {
        "keypoints": kp,
        "confidence": rng.uniform(0, 1, (3, 2, 25)).astype(np.float32),
        "keypoint_set": np.asarray("openpose_body25"),
        "frame_names": np.asarray(["a", "b", "c"]),
        "person_ids": np.asarray([[0, 1], [0, -1], [1, 0]]),
        "tracked": np.asarray(True),
        "image_size": np.asarray([640, 480]),
    }


NPZ_DETECTIONS = _detections_arrays()
NPY_DETECTIONS = np.random.default_rng(5).uniform(0, 500, (4, 25, 3)).astype(np.float32)


def check_detections_result(det: Detections) -> None:
    f, p, k = det.keypoints.shape[:3]
    assert det.keypoints.shape == (f, p, num_keypoints(det.keypoint_set), 2)
    assert det.confidence.shape == (f, p, k) and det.person_ids.shape == (f, p)
    assert det.keypoints.dtype == np.float32 and det.confidence.dtype == np.float32
    assert np.isfinite(det.keypoints).all() and np.isfinite(det.confidence).all()
    assert ((det.confidence >= 0) & (det.confidence <= 1)).all()
    assert len(det.frame_names) == f and all(isinstance(n, str) for n in det.frame_names)
    assert det.person_ids.dtype == np.int64
    if det.image_size is not None:
        w, h = det.image_size
        assert type(w) is int and type(h) is int and w > 0 and h > 0
    # what predict does next works on it
    kp, conf, index = det.flatten()
    assert len(kp) == len(conf) == len(index) == det.num_detections


@pytest.mark.parametrize("kind", sorted(JSON_FILES))
def test_valid_detection_files_read(tmp_path, kind):
    det = read_detections(_write(tmp_path, "d.json", JSON_FILES[kind]))
    check_detections_result(det)
    assert det.num_detections >= 2


def test_valid_numpy_detections_read(tmp_path):
    check_detections_result(read_detections(_write(tmp_path, "d.npz", _npz_bytes(NPZ_DETECTIONS))))
    buf = io.BytesIO()
    np.save(buf, NPY_DETECTIONS)
    check_detections_result(read_detections(_write(tmp_path, "d.npy", buf.getvalue())))


@PROPERTY
@given(kind=st.sampled_from(sorted(JSON_FILES)), data=st.data())
def test_mutated_json_detections(tmp_path, kind, data):
    raw = data.draw(mutated(JSON_FILES[kind]))
    det = _refused_or(read_detections, _write(tmp_path, "frame_keypoints.json", raw))
    if det is not None:
        check_detections_result(det)


@PROPERTY
@given(
    raw=random_bytes(b"{", b"[", b'{"people": [', b"[{", b"\xef\xbb\xbf"),
    suffix=st.sampled_from([".json", ".npy", ".npz"]),
)
def test_random_bytes_detections(tmp_path, raw, suffix):
    det = _refused_or(read_detections, _write(tmp_path, f"x{suffix}", raw))
    if det is not None:
        check_detections_result(det)


def _json_values():
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True),
        st.text(max_size=4),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=8,
    )


@PROPERTY
@given(kind=st.sampled_from(sorted(JSON_FILES)), data=st.data())
def test_json_detections_with_odd_values(tmp_path, kind, data):
    """Valid files with one field set to a JSON value of another type (lists, dicts, huge ints, ...)."""
    doc = json.loads(JSON_FILES[kind])
    records = (
        doc["people"]
        if kind == "openpose"
        else doc
        if kind == "coco-results"
        else doc["annotations"]
    )
    targets = [records[0], records[-1]] + (
        [doc["images"][0], doc["categories"][0], doc] if kind == "coco-dataset" else []
    )
    target = data.draw(st.sampled_from(targets))
    key = data.draw(st.sampled_from(sorted(target) + ["track_id", "person_id"]))
    target[key] = data.draw(_json_values())
    raw = json.dumps(doc).encode()  # Python's json writes NaN/Infinity, as some tools do
    det = _refused_or(read_detections, _write(tmp_path, "odd.json", raw))
    if det is not None:
        check_detections_result(det)


@PROPERTY
@given(data=st.data(), suffix=st.sampled_from([".npz", ".npy"]))
def test_mutated_numpy_detections(tmp_path, data, suffix):
    if suffix == ".npz":
        valid = _npz_bytes(NPZ_DETECTIONS)
    else:
        buf = io.BytesIO()
        np.save(buf, NPY_DETECTIONS)
        valid = buf.getvalue()
    det = _refused_or(read_detections, _write(tmp_path, f"m{suffix}", data.draw(mutated(valid))))
    if det is not None:
        check_detections_result(det)


@PROPERTY
@given(arrays=edited_arrays(NPZ_DETECTIONS, ("scores",)))
def test_edited_npz_detections(tmp_path, arrays):
    det = _refused_or(read_detections, _write(tmp_path, "e.npz", _npz_bytes(arrays)))
    if det is not None:
        check_detections_result(det)


@PROPERTY
@given(array=any_array())
def test_any_npy_array_as_detections(tmp_path, array):
    buf = io.BytesIO()
    np.save(buf, array)
    det = _refused_or(read_detections, _write(tmp_path, "a.npy", buf.getvalue()))
    if det is not None:
        check_detections_result(det)


# ----------------------------------------------------------------------------- benchmark files


def _benchmark_arrays() -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(0)
    n = 3
    q, _ = torch.linalg.qr(torch.randn(n, 24, 3, 3, generator=g))
    bench = BenchmarkSet(
        name="tiny",
        keypoints2d=torch.rand(n, 17, 2, generator=g) * 500,
        confidence=torch.rand(n, 17, generator=g),
        keypoint_set="coco17",
        pose=q,
        betas=torch.randn(n, 10, generator=g),
        genders=["male", "female", "neutral"],
        image_names=["a", "b", "c"],
        joints3d=torch.randn(n, 17, 3, generator=g),
        joints3d_set="coco17",
        intrinsics=torch.eye(3).repeat(n, 1, 1),
        dropped=1,
        drop_reason="1 too sparse",
        excluded={"other": 2},
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = save_benchmark(bench, Path(tmp) / "b.npz")
        with np.load(out) as z:
            return {k: z[k] for k in z.files}


BENCHMARK = _benchmark_arrays()


def check_benchmark_result(bench: BenchmarkSet) -> None:
    n = len(bench)
    assert bench.keypoints2d.shape == (n, num_keypoints(bench.keypoint_set), 2)
    for name in ("keypoints2d", "confidence", "pose", "betas", "joints3d", "intrinsics"):
        value = getattr(bench, name)
        if value is not None:
            assert value.dtype == torch.float32 and len(value) == n, name
            assert torch.isfinite(value).all(), name
    assert ((bench.confidence >= 0) & (bench.confidence <= 1)).all()
    if bench.joints3d is not None:
        assert bench.joints3d.ndim == 3 and bench.joints3d.shape[2] == 3 and bench.joints3d_set
    assert len(bench.genders) == len(bench.image_names) == n
    assert all(g in ("male", "female", "neutral") for g in bench.genders)
    assert all(isinstance(x, str) for x in bench.image_names)
    assert isinstance(bench.dropped, int) and bench.dropped >= 0
    assert isinstance(bench.excluded, dict)
    assert all(
        isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in bench.excluded.items()
    )
    bench.summary()


def test_valid_benchmark_file_reads(tmp_path):
    check_benchmark_result(
        load_benchmark_file(_write(tmp_path, "b.npz", _npz_bytes(BENCHMARK, compressed=True)))
    )


@PROPERTY
@given(data=st.data(), compressed=st.booleans())
def test_mutated_benchmark_file(tmp_path, data, compressed):
    raw = data.draw(mutated(_npz_bytes(BENCHMARK, compressed)))
    bench = _refused_or(load_benchmark_file, _write(tmp_path, "b.npz", raw))
    if bench is not None:
        check_benchmark_result(bench)


@PROPERTY
@given(arrays=edited_arrays(BENCHMARK))
def test_edited_benchmark_file(tmp_path, arrays):
    bench = _refused_or(load_benchmark_file, _write(tmp_path, "b.npz", _npz_bytes(arrays)))
    if bench is not None:
        check_benchmark_result(bench)


@PROPERTY
@given(raw=random_bytes(b"PK\x03\x04", b"\x93NUMPY"))
def test_random_bytes_benchmark_file(tmp_path, raw):
    bench = _refused_or(load_benchmark_file, _write(tmp_path, "r.npz", raw))
    if bench is not None:
        check_benchmark_result(bench)


# ----------------------------------------------------------------------------- training cache


def _cache_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(6)
    q, _ = np.linalg.qr(rng.normal(size=(6, 24, 3, 3)))
    return {
        "rotmats": q.astype(np.float32),
        "clip_index": np.asarray([0, 0, 1, 1, 2, 2], np.int32),
        "clip_names": np.asarray(["c0", "c1", "c2"]),
        "clip_sources": np.asarray(["s", "s", "t"]),
        "clip_subjects": np.asarray(["", "cmu_02", ""]),
        "shapes": rng.normal(size=(4, 10)).astype(np.float32),
        "body": np.asarray(json.dumps({"name": "anny", "topology": "smpl"})),
        "meta": np.asarray(json.dumps({"fps": 30})),
    }


CACHE = _cache_arrays()


def check_cache_result(bank: PoseBank) -> None:
    n = bank.num_frames
    assert bank.rotmats.shape == (n, 24, 3, 3) and np.issubdtype(bank.rotmats.dtype, np.floating)
    assert np.isfinite(bank.rotmats).all() and (np.abs(bank.rotmats) <= 1 + 1e-3).all()
    assert bank.clip_index.shape == (n,) and np.issubdtype(bank.clip_index.dtype, np.integer)
    assert ((bank.clip_index >= 0) & (bank.clip_index < len(bank.clip_names))).all()
    assert bank.shapes.ndim == 2 and len(bank.shapes) >= 1 and np.isfinite(bank.shapes).all()
    assert np.issubdtype(bank.shapes.dtype, np.floating)
    assert all(isinstance(c, str) for c in bank.clip_names)
    for extra in (bank.clip_sources, bank.clip_subjects):
        assert len(extra) in (0, len(bank.clip_names)) and all(isinstance(c, str) for c in extra)
    assert isinstance(bank.body, dict) and isinstance(bank.meta, dict)


def _save_cache(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    return _write(folder, "cache.npz", _npz_bytes(arrays))


def test_valid_cache_reads_and_a_cut_cache_is_one_line(tmp_path):
    bank = PoseBank.load(_save_cache(tmp_path, CACHE))
    check_cache_result(bank)
    assert bank.num_frames == 6 and bank.clip_subjects == ["", "cmu_02", ""]
    path = tmp_path / "cache.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a copy interrupted half way
    with pytest.raises(
        Key2MeshError, match=r"^cannot read training cache .*cache\.npz: [^\n]*$"
    ) as info:
        PoseBank.load(path)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@PROPERTY
@given(data=st.data())
def test_mutated_cache(tmp_path, data):
    raw = data.draw(mutated(_npz_bytes(CACHE)))
    bank = _refused_or(PoseBank.load, _write(tmp_path, "cache.npz", raw))
    if bank is not None:
        check_cache_result(bank)


@PROPERTY
@given(arrays=edited_arrays(CACHE))
def test_edited_cache(tmp_path, arrays):
    bank = _refused_or(PoseBank.load, _save_cache(tmp_path, arrays))
    if bank is not None:
        check_cache_result(bank)


@PROPERTY
@given(raw=random_bytes(b"PK\x03\x04", b"\x93NUMPY"))
def test_random_bytes_cache(tmp_path, raw):
    bank = _refused_or(PoseBank.load, _write(tmp_path, "cache.npz", raw))
    if bank is not None:
        check_cache_result(bank)


def test_cut_cache_at_every_tenth_byte(tmp_path):
    """Truncation at any point (a full disk, an interrupted download) is a one-line error."""
    raw = _npz_bytes(CACHE)
    assert len(raw) > 1000
    for size in range(0, len(raw), max(1, len(raw) // 97)):
        bank = _refused_or(PoseBank.load, _write(tmp_path, "cut.npz", raw[:size]))
        assert bank is None, size
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        assert "rotmats.npy" in z.namelist()  # the fixture is a real uncompressed npz


# -------------------------------------------------------------------------------------------- BVH

BVH = b"""HIERARCHY
ROOT hip
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT arm
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 2 0 0
    }
  }
  JOINT leg
  {
    OFFSET 3 -4 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 -6 0
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.025
1 2 3 0 0 0 0 0 0 0 0 0
5 2 3 90 0 0 10 20 30 0 0 0
1 2 3 0 0 0 90 90 0 0 45 0
"""


def check_bvh(path: Path) -> None:
    motion = _refused_or(read_bvh, path)
    if motion is None:
        return
    channels = sum(len(j.channels) for j in motion.joints)
    assert motion.values.shape == (motion.num_frames, channels) and motion.num_frames >= 1
    assert np.isfinite(motion.values).all()
    assert (
        math.isfinite(motion.frame_time)
        and motion.frame_time > 0
        and math.isfinite(motion.fps)
        and motion.fps > 0
    )
    assert all(-1 <= j.parent < i for i, j in enumerate(motion.joints))
    out = _refused_or(forward_kinematics, motion)
    if out is not None:
        positions, names = out
        assert (
            positions.shape == (motion.num_frames, len(names), 3) and np.isfinite(positions).all()
        )


def test_valid_bvh_reads(tmp_path):
    motion = read_bvh(_write(tmp_path, "t.bvh", BVH))
    assert motion.num_frames == 3 and forward_kinematics(motion)[0].shape == (3, 5, 3)


@PROPERTY
@given(data=st.data())
def test_mutated_bvh(tmp_path, data):
    check_bvh(_write(tmp_path, "m.bvh", data.draw(mutated(BVH))))


@PROPERTY
@given(raw=random_bytes(b"HIERARCHY\nROOT a\n{\n", BVH[: BVH.index(b"MOTION")]))
def test_random_bytes_bvh(tmp_path, raw):
    check_bvh(_write(tmp_path, "r.bvh", raw))


# ------------------------------------------------------------------------------------------ ASF/AMC

ASF = b"""# test skeleton
:version 1.10
:name TEST
:units
  mass 1.0
  length 0.45
  angle deg
:documentation
   free text
:root
   order TX TY TZ RX RY RZ
   axis XYZ
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name a
     direction 1 0 0
     length 2
     axis 0 0 0  XYZ
    dof rx ry rz
    limits (-180.0 180.0)
           (-180.0 180.0)
           (-180.0 180.0)
  end
  begin
     id 2
     name b
     direction 0 1 0
     length 1
     axis 0 0 -20  XYZ
    dof rx rz
    limits (-180.0 180.0)
           (-180.0 180.0)
  end
  begin
     id 3
     name c
     direction 0 0 1
     length 0.5
     axis 90 0 0  XYZ
  end
:hierarchy
  begin
    root a
    a b
    b c
  end
"""

AMC = b"""#!OML:ASF test.asf
:FULLY-SPECIFIED
:DEGREES
1
root 1 2 3 0 0 0
a 0 0 0
b 0 0
2
root 1 2 3 0 10 0
a 0 0 90
b 45 0
3
root 0 0 0 0 90 0
a 0 0 0
b 90 0
"""


def check_asf_amc(asf: Path, amc: Path) -> None:
    out = _refused_or(read_asf_amc, asf, amc)
    if out is None:
        return
    positions, names, fps = out
    assert positions.ndim == 3 and positions.shape[1:] == (len(names), 3) and len(positions) >= 1
    assert np.isfinite(positions).all() and math.isfinite(fps) and fps > 0


def test_valid_asf_amc_reads(tmp_path):
    positions, names, fps = read_asf_amc(
        _write(tmp_path, "t.asf", ASF), _write(tmp_path, "t.amc", AMC)
    )
    assert positions.shape == (3, 5, 3) and fps == 120
    sk = parse_asf(ASF.decode())
    assert asf_amc_joint_positions(sk, parse_amc(AMC.decode(), sk))[0].shape == (3, 5, 3)


@PROPERTY
@given(data=st.data(), which=st.sampled_from(["asf", "amc"]))
def test_mutated_asf_amc(tmp_path, data, which):
    asf = data.draw(mutated(ASF)) if which == "asf" else ASF
    amc = data.draw(mutated(AMC)) if which == "amc" else AMC
    check_asf_amc(_write(tmp_path, "m.asf", asf), _write(tmp_path, "m.amc", amc))


@PROPERTY
@given(
    raw=random_bytes(b":root\n", b":bonedata\n  begin\n", b"1\nroot "),
    which=st.sampled_from(["asf", "amc"]),
)
def test_random_bytes_asf_amc(tmp_path, raw, which):
    asf, amc = (raw, AMC) if which == "asf" else (ASF, raw)
    check_asf_amc(_write(tmp_path, "r.asf", asf), _write(tmp_path, "r.amc", amc))


# ---------------------------------------------------------------------------------------- archives

_NAME_PARTS = st.sampled_from(["a", "b.bvh", "..", ".", "", "C:", "c:x", "\\", "..\\x", "~", " "])


@st.composite
def member_names(draw) -> str:
    """Member names built from path pieces that are harmless or try to leave the folder."""
    name = "/".join(draw(st.lists(_NAME_PARTS, min_size=1, max_size=5)))
    return draw(st.sampled_from(["", "/", "//", "./"])) + name


@PROPERTY
@given(
    names=st.lists(member_names(), min_size=1, max_size=4, unique=True),
    kind=st.sampled_from(["zip", "tar"]),
)
def test_archive_members_never_leave_the_folder(names, kind):
    """extract_members writes only inside its target folder, or refuses with one line."""
    from key2mesh.safe_extract import extract_members

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        arch = root / ("a.zip" if kind == "zip" else "a.tar")
        if kind == "zip":
            with zipfile.ZipFile(arch, "w") as zf:
                for n in names:
                    zf.writestr(n or "x", b"data")
        else:
            import tarfile

            with tarfile.open(arch, "w") as tar:
                for n in names:
                    info = tarfile.TarInfo(n)
                    info.size = 4
                    tar.addfile(info, io.BytesIO(b"data"))
        target = root / "deep" / "out"
        before = {p for p in root.rglob("*")}
        out = _refused_or(extract_members, arch, target, lambda n: True)
        written = {p for p in root.rglob("*")} - before
        inside = [p for p in written if p.resolve().is_relative_to(target.resolve())]
        assert set(inside) | {root / "deep", target} >= written, written
        if out is not None:
            assert all(p.is_file() and p.is_relative_to(target.resolve()) for p in out)


@PROPERTY
@given(
    raw=random_bytes(b"PK\x03\x04", b"\xfd7zXZ\x00", b"\x1f\x8b"),
    suffix=st.sampled_from([".zip", ".tar.xz", ".tar.gz"]),
)
def test_random_bytes_archive(tmp_path, raw, suffix):
    from key2mesh.safe_extract import read_members

    path = _write(tmp_path, "r" + suffix, raw)
    _refused_or(lambda: list(read_members(path, lambda n: True)))
