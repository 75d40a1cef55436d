"""The keypoint-files → fitted-bodies pipeline behind ``key2mesh fit`` (the command only parses
its options and prints): :class:`FitConfig` holds every option and its default."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from key2mesh.body.traits import body_traits
from key2mesh.errors import Key2MeshError
from key2mesh.fitting.smplify import FitWeights, fit_to_keypoints
from key2mesh.keypoints.io import MIN_KEYPOINTS
from key2mesh.options import rule


@dataclass
class FitConfig:
    """All options of ``key2mesh fit`` (a JSON/YAML ``--config`` file sets any of them)."""

    fit_set: str = "openpose_body25"  # keypoint set the fit uses (inputs are converted); --init-from: the model's
    body: str = field(default="anny", metadata=rule(choices=("anny", "smpl")))
    smpl_dir: str | None = None
    init_from: str | None = None  # checkpoint or shipped name: start from Key2Mesh's prediction
    iters: int = field(default=100, metadata=rule(ge=0))
    optimizer: str = field(default="adam", metadata=rule(choices=("adam", "lbfgs")))
    # None: the optimiser's default in fit_to_keypoints
    lr: float | None = field(default=None, metadata=rule(gt=0))
    weights: FitWeights = field(default_factory=FitWeights)
    batch_size: int = field(default=512, metadata=rule(ge=1))
    min_keypoints: int = field(default=MIN_KEYPOINTS, metadata=rule(ge=1))

    @classmethod
    def from_dict(cls, d: dict) -> FitConfig:
        d = dict(d)
        if isinstance(d.get("weights"), dict):
            d["weights"] = FitWeights(**d["weights"])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise Key2MeshError(f"unknown fit options: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitTable:
    """One row per fitted detection (``names``: ``{frame}_p{person}``), the body it was fitted
    with, how many detections were read (``total``) and skipped by reason, and the run time."""

    rotmats: np.ndarray
    shape: np.ndarray
    reprojection_error: np.ndarray
    names: list[str]
    body: str
    keypoint_set: str
    total: int
    skipped: dict[str, int]
    seconds: float


def fit_files(cfg: FitConfig, inputs: list[str], keypoint_set: str | None = None) -> FitTable:
    """Fit every usable detection of the keypoint files (``keypoint_set``: of the inputs, when it
    cannot be inferred). A one-line :class:`Key2MeshError` when none is usable."""
    from key2mesh.body import load_body_model
    from key2mesh.keypoints.io import check_detections, read_detections

    model = camera = None
    if cfg.init_from:
        from key2mesh.inference.predictor import Key2Mesh

        model = Key2Mesh.from_pretrained(cfg.init_from, full_mesh=False, smpl_dir=cfg.smpl_dir)
        # the checkpoint's camera: its predicted orientation and pose explain the input through
        # that camera (a non-default one, e.g. 2.5 m away, projects the same body differently)
        body, fit_set, camera = model.body, model.keypoint_set, model.camera
    else:
        body = load_body_model(cfg.body, **body_traits(cfg.body).model_dir_options(cfg.smpl_dir))
        fit_set = cfg.fit_set
    rot_all, shape_all, err_all, names = [], [], [], []
    skipped: dict[str, int] = {}
    total = 0
    t0 = time.perf_counter()
    for path in inputs:
        det = read_detections(path, keypoint_set=keypoint_set).to(fit_set)
        kp, conf, index = det.flatten()
        total += len(kp)
        # a detection without enough confident keypoints has nothing to fit (its error would read 0)
        check = check_detections(kp, conf, cfg.min_keypoints)
        for why, count in check.reasons(cfg.min_keypoints).items():
            skipped[why] = skipped.get(why, 0) + count
        kp, conf, index = kp[check.usable], conf[check.usable], index[check.usable]
        for i in range(0, len(kp), cfg.batch_size):
            k, c = (
                torch.from_numpy(kp[i : i + cfg.batch_size]),
                torch.from_numpy(conf[i : i + cfg.batch_size]),
            )
            init_r = init_s = None
            if model is not None:
                pred = model.predict(k, c, mesh=False)
                init_r, init_s = pred.rotmats, pred.shape
            res = fit_to_keypoints(
                body,
                k,
                c,
                fit_set,
                camera=camera,
                init_rotmats=init_r,
                init_shape=init_s,
                iters=cfg.iters,
                lr=cfg.lr,
                optimizer=cfg.optimizer,
                weights=cfg.weights,
            )
            rot_all.append(res.rotmats.detach().cpu().numpy())
            shape_all.append(res.shape.detach().cpu().numpy())
            err_all.append(res.reprojection_error.detach().cpu().numpy())
        names += [f"{det.frame_names[f]}_p{det.person_ids[f, p]}" for f, p in index]
    if not names:
        why = "; ".join(f"{n} {reason}" for reason, n in skipped.items())
        raise Key2MeshError(
            f"nothing to fit in {', '.join(inputs)}: {total} detections read"
            f"{', none usable (' + why + ')' if why else ''}"
        )
    return FitTable(
        np.concatenate(rot_all),
        np.concatenate(shape_all),
        np.concatenate(err_all),
        names,
        str(body.config()),
        fit_set,
        total,
        skipped,
        time.perf_counter() - t0,
    )
