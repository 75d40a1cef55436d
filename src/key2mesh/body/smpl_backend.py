"""The SMPL body model (user-supplied, licensed files) behind the
:class:`~key2mesh.body.base.BodyModel` interface, through the ``smplx`` package.

The SMPL files come from https://smpl.is.tue.mpg.de under SMPL's license and are never bundled
with key2mesh: point ``model_dir`` (or ``$KEY2MESH_SMPL_DIR``) at a folder holding
``SMPL_NEUTRAL.pkl`` / ``SMPL_MALE.pkl`` / ``SMPL_FEMALE.pkl`` (also accepted: ``.npz`` versions and
the original ``basicmodel_{neutral,m,f}_lbs_10_207_0_v1.*.pkl`` names), directly or in ``smpl/``.
Files that hold chumpy objects (the originals) are read without chumpy. Model files are read as
data: ``.pkl`` through an unpickler that allows only SMPL's numpy/scipy/chumpy globals
(:mod:`~key2mesh.body.smpl_pickle`), ``.npz`` without pickled objects.

SMPL's frame is key2mesh's world frame, so rotations pass through unchanged (``pose2rot=False``);
the output is shifted so that the root joint sits at the origin (SMPL keeps its rest pelvis
offset there, ~22 cm below the origin).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from key2mesh.body.base import BodyModel, BodyOutput
from key2mesh.body.smpl_pickle import Chumpy, load_smpl_pickle
from key2mesh.errors import Key2MeshError
from key2mesh.keypoints.sets import COCO23, SMPL24, canonical_set_name

ENV_VAR = "KEY2MESH_SMPL_DIR"
SMPL_URL = "https://smpl.is.tue.mpg.de"
GENDERS = ("neutral", "male", "female")
EXPECTED_FILES = "SMPL_NEUTRAL.pkl / SMPL_MALE.pkl / SMPL_FEMALE.pkl"
SMPL_VERTICES, SMPL_JOINTS = 6890, 24
# What a file with another vertex count (and joint count) most likely is.
_OTHER_MODELS = {
    10475: "an SMPL-X model?",
    (6890, 52): "an SMPL-H model?",
    778: "a MANO hand model?",
    5023: "a FLAME head model?",
    (6890, 55): "an SMPL-X-like model on SMPL's mesh?",
}

# COCO-23 points taken as single vertices: COCO name -> key of smplx.vertex_ids["smplh"].
_VERTEX_KEYPOINTS = {
    "nose": "nose", "left_eye": "leye", "right_eye": "reye", "left_ear": "lear", "right_ear": "rear",
    "left_big_toe": "LBigToe", "left_small_toe": "LSmallToe", "left_heel": "LHeel",
    "right_big_toe": "RBigToe", "right_small_toe": "RSmallToe", "right_heel": "RHeel",
}  # fmt: skip
# The other COCO-23 points (shoulders … ankles) use the J_regressor row of SMPL joint "smpl_<name>".

_FILE_PATTERNS = (  # (regex on the file name, gender group → gender); earlier = preferred
    (re.compile(r"smpl_(neutral|male|female)\.pkl", re.I), None),
    (re.compile(r"smpl_(neutral|male|female)\.npz", re.I), None),
    (
        re.compile(r"basicmodel_(neutral|m|f)_lbs_10_207_0_v[\d.]+\.pkl", re.I),
        {"m": "male", "f": "female"},
    ),
)


def find_smpl_files(directory: str | Path) -> dict[str, Path]:
    """SMPL model files found in ``directory`` or ``directory/smpl``: ``{gender: path}``."""
    found: dict[str, Path] = {}
    for folder in (Path(directory), Path(directory) / "smpl"):
        if not folder.is_dir():
            continue
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        for pattern, rename in _FILE_PATTERNS:
            for name in names:
                m = pattern.fullmatch(name)
                if m:
                    gender = m.group(1).lower()
                    found.setdefault((rename or {}).get(gender, gender), folder / name)
    return found


def _plain(value, path: Path, key: str):
    """chumpy stand-in → its numpy value (a chumpy variable keeps it under ``x``)."""
    if isinstance(value, Chumpy):
        state = value.__dict__.get("_state")
        if isinstance(state, dict) and "x" in state:
            return np.asarray(state["x"])
        raise Key2MeshError(
            f"{path}: entry {key!r} is a chumpy expression key2mesh cannot read; re-save the file with plain numpy arrays"
        )
    return value


def _load_npz(path: Path) -> dict:
    """The arrays of an ``.npz`` model file; an object array (pickled objects) is refused."""
    data = {}
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            try:
                data[key] = npz[key]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise
                raise Key2MeshError(
                    f"{path}: entry {key!r} is an object array (pickled Python objects), which "
                    "key2mesh never loads; re-save it as plain arrays (J_regressor dense)"
                ) from None
    return data


def load_smpl_data(path: str | Path) -> dict:
    """Read an SMPL model file (.pkl, chumpy or not, or .npz) into plain numpy/scipy values."""
    path = Path(path)
    try:
        data = _load_npz(path) if path.suffix.lower() == ".npz" else load_smpl_pickle(path)
    except (
        OSError,
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        ImportError,
        AttributeError,
        TypeError,
        zipfile.BadZipFile,
    ) as exc:
        raise Key2MeshError(
            f"{path}: not a readable SMPL model file ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(data, dict):
        raise Key2MeshError(f"{path}: expected a dict of SMPL arrays, got {type(data).__name__}")
    data = {k: _plain(v, path, k) for k, v in data.items()}
    required = (
        "v_template",
        "shapedirs",
        "posedirs",
        "J_regressor",
        "weights",
        "kintree_table",
        "f",
    )
    missing = [k for k in required if k not in data]
    if missing:
        raise Key2MeshError(f"{path}: not an SMPL model file, missing {missing}")
    nv, nj = np.shape(data["v_template"])[0], np.shape(data["kintree_table"])[-1]
    if (nv, nj) != (SMPL_VERTICES, SMPL_JOINTS):
        hint = _OTHER_MODELS.get((nv, nj)) or _OTHER_MODELS.get(nv)
        raise Key2MeshError(
            f"{path} has {nv:,} vertices and {nj} joints{f': {hint} ' if hint else '; '}key2mesh needs "
            f"SMPL ({SMPL_VERTICES:,} vertices, {SMPL_JOINTS} joints) from {SMPL_URL}"
        )
    checks = {
        "v_template": (np.shape(data["v_template"]), (nv, 3)),
        "shapedirs": (np.shape(data["shapedirs"])[:2], (nv, 3)),
        "weights": (np.shape(data["weights"]), (nv, 24)),
        "J_regressor": (tuple(data["J_regressor"].shape), (24, nv)),
        "kintree_table": (np.shape(data["kintree_table"]), (2, 24)),
    }
    for key, (got, want) in checks.items():
        if tuple(got) != want:
            raise Key2MeshError(
                f"{path}: SMPL entry {key!r} has shape {tuple(got)}, expected {want}"
            )
    if np.shape(data["shapedirs"])[2] < 10:
        raise Key2MeshError(
            f"{path}: SMPL shapedirs has {np.shape(data['shapedirs'])[2]} components, expected at least 10"
        )
    return data


def _import_smplx():
    try:
        import smplx
        from smplx.utils import Struct
    except ImportError as exc:
        raise Key2MeshError(
            f"the SMPL body model needs the smplx package ({exc}); install it with `pip install 'key2mesh[smpl]'` (or `pip install smplx`)"
        ) from exc
    return smplx, Struct


class SMPLBody(BodyModel):
    """SMPL (6,890 vertices) behind the SMPL-24 rotation interface. Shape = 10 betas.

    ``joint_regressor_h36m``: optional path to SPIN's ``J_regressor_h36m.npy`` (17, 6890); when
    given, ``keypoint_regressor("h36m17")`` returns it instead of the COCO-23-derived map.
    """

    name = "smpl"
    shape_dim = 10

    def __init__(
        self,
        model_dir: str | Path | None = None,
        gender: str = "neutral",
        joint_regressor_h36m: str | Path | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        gender = str(gender).lower()
        if gender not in GENDERS:
            raise Key2MeshError(f"SMPL gender must be one of {', '.join(GENDERS)}, got {gender!r}")
        self.gender = gender
        self._model_dir_arg = (
            None if model_dir is None else str(Path(model_dir).expanduser().resolve())
        )
        directory = self._model_dir_arg or os.environ.get(ENV_VAR)
        licence = (
            f"the licensed SMPL files come from {SMPL_URL} and are never bundled with key2mesh"
        )
        if not directory:
            raise Key2MeshError(
                f"no SMPL model folder: pass model_dir or set {ENV_VAR} to a folder with {EXPECTED_FILES}; {licence}"
            )
        directory = Path(directory).expanduser()
        files = find_smpl_files(directory)
        if gender not in files:
            have = f" (found only {', '.join(sorted(files))})" if files else ""
            raise Key2MeshError(
                f"no SMPL {gender} model in {directory} or {directory / 'smpl'}{have}: expected {EXPECTED_FILES} "
                f"(or .npz / basicmodel_*_lbs_10_207_0_v1.*.pkl), set via model_dir or {ENV_VAR}; {licence}"
            )
        self.model_path = files[gender]
        smplx, struct = _import_smplx()
        data = load_smpl_data(self.model_path)
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning about 10 betas
            smpl = smplx.create(
                str(self.model_path.parent), model_type="smpl", gender=gender, data_struct=struct(**data),
                num_betas=self.shape_dim, create_betas=False, create_global_orient=False,
                create_body_pose=False, create_transl=False, dtype=dtype,
            )  # fmt: skip
        # Keep the licensed arrays out of state_dict() (and so out of checkpoints).
        for module in smpl.modules():
            for key, buf in list(module._buffers.items()):
                module.register_buffer(key, buf, persistent=False)
        self.smpl = smpl
        nv = int(smpl.v_template.shape[0])
        self.register_buffer("faces", smpl.faces_tensor.clone(), persistent=False)
        j_reg = data["J_regressor"]
        j_reg = j_reg.toarray() if scipy.sparse.issparse(j_reg) else np.asarray(j_reg)
        self.register_buffer(
            "coco23_regressor", self._build_coco23(j_reg, nv).to(dtype), persistent=False
        )
        self._h36m_path = (
            None
            if joint_regressor_h36m is None
            else str(Path(joint_regressor_h36m).expanduser().resolve())
        )
        h36m = None
        if self._h36m_path is not None:
            h36m = self._load_h36m(Path(self._h36m_path), nv).to(dtype)
        self.register_buffer("joint_regressor_h36m", h36m, persistent=False)

    @staticmethod
    def _build_coco23(j_regressor: np.ndarray, num_vertices: int) -> torch.Tensor:
        """(23, V): SMPL J_regressor rows for body joints, one-hot vertices for face/feet points."""
        from smplx.vertex_ids import vertex_ids

        table = vertex_ids["smplh"]  # SMPL and SMPL-H share their topology
        w = np.zeros((len(COCO23), num_vertices))
        for k, name in enumerate(COCO23):
            if name in _VERTEX_KEYPOINTS:
                w[k, table[_VERTEX_KEYPOINTS[name]]] = 1.0
            else:
                w[k] = j_regressor[SMPL24.index("smpl_" + name)]
        return torch.from_numpy(w)

    @staticmethod
    def _load_h36m(path: Path, num_vertices: int) -> torch.Tensor:
        try:
            reg = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise Key2MeshError(
                f"{path}: cannot read the H36M joint regressor ({exc}); expected a (17, {num_vertices}) .npy"
            ) from exc
        if reg.shape != (17, num_vertices):
            raise Key2MeshError(
                f"{path}: H36M joint regressor has shape {reg.shape}, expected (17, {num_vertices})"
            )
        return torch.from_numpy(np.asarray(reg, dtype=np.float64))

    def config(self) -> dict:
        """Name, folder (None = ``$KEY2MESH_SMPL_DIR`` at load time) and gender; never the arrays."""
        cfg = {"name": "smpl", "model_dir": self._model_dir_arg, "gender": self.gender}
        if self._h36m_path is not None:
            cfg["joint_regressor_h36m"] = self._h36m_path
        return cfg

    def default_shape(self, batch_size: int = 1) -> torch.Tensor:
        """(B, 10) zero betas: the mean SMPL shape."""
        return torch.zeros(batch_size, self.shape_dim, dtype=self.dtype, device=self.device)

    def joint_skin_weights(self, smpl_index: np.ndarray) -> np.ndarray:
        """(6890, J) float64 SMPL skin weights on the joints ``smpl_index`` (all 24 are driven)."""
        return self.smpl.lbs_weights.double().cpu().numpy()[:, smpl_index]

    def keypoint_regressor(self, keypoint_set: str) -> torch.Tensor:
        """(K, 6890); the user's H36M regressor for ``h36m17`` when one was given."""
        if self.joint_regressor_h36m is not None and canonical_set_name(keypoint_set) == "h36m17":
            return self.joint_regressor_h36m
        return super().keypoint_regressor(keypoint_set)

    def forward(
        self,
        rotmats: torch.Tensor,
        shape: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> BodyOutput:
        """rotmats (B, 24, 3, 3), shape (B, 10) betas, transl (B, 3) metres → :class:`BodyOutput`
        with vertices (B, 6890, 3), joints (B, 24, 3), keypoints (B, 23, 3); root at ``transl``."""
        rotmats, shape = self._check_pose(rotmats, shape)
        self._check_transl(transl, rotmats.shape[0])
        if rotmats.shape[0] == 0:  # smplx cannot run an empty batch
            return self._empty_output()
        out = self.smpl(
            betas=shape, global_orient=rotmats[:, :1], body_pose=rotmats[:, 1:], pose2rot=False
        )
        root = out.joints[:, :1]  # the root joint does not move under rotations: its rest offset
        verts = out.vertices - root
        joints = out.joints[:, :24] - root
        keypoints = torch.einsum("kv,bvd->bkd", self.coco23_regressor, verts)
        if transl is not None:
            t = transl.to(self.dtype)[:, None]
            verts, joints, keypoints = verts + t, joints + t, keypoints + t
        return BodyOutput(vertices=verts, joints=joints, keypoints=keypoints)
