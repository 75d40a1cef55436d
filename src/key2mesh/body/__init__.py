"""Body models behind one interface: anny (default, bundled) and SMPL (user-supplied files)."""

from __future__ import annotations

from key2mesh.body.base import BodyModel, BodyOutput
from key2mesh.body.traits import TRAITS, BodyTraits, body_traits
from key2mesh.errors import Key2MeshError

BACKENDS = tuple(TRAITS)


def load_body_model(name: str = "anny", device: str | None = None, **options) -> BodyModel:
    """Build a body model by backend name.

    anny options: ``rig``, ``topology`` (defaults: the fast training rig and 1,229-vertex mesh;
    ``topology="anny"`` is the full mesh for output). smpl options: ``model_dir`` (else
    ``$KEY2MESH_SMPL_DIR``), ``gender`` (neutral/male/female).
    """
    name = name.lower()
    if name == "anny":
        from key2mesh.body.anny_backend import AnnyBody

        model: BodyModel = AnnyBody(
            **{k: v for k, v in options.items() if k in ("rig", "topology")}
        )
    elif name == "smpl":
        from key2mesh.body.smpl_backend import SMPLBody

        model = SMPLBody(
            **{
                k: v
                for k, v in options.items()
                if k in ("model_dir", "gender", "joint_regressor_h36m")
            }
        )
    else:
        raise Key2MeshError(f"unknown body model {name!r}; available: {', '.join(BACKENDS)}")
    if device is not None:
        model = model.to(device)
    return model


def body_model_from_config(config: dict, device: str | None = None) -> BodyModel:
    """Rebuild a body model from :meth:`BodyModel.config` (as stored in checkpoints)."""
    cfg = dict(config)
    return load_body_model(cfg.pop("name"), device=device, **cfg)


__all__ = [
    "BodyModel",
    "BodyOutput",
    "BodyTraits",
    "load_body_model",
    "body_model_from_config",
    "body_traits",
    "BACKENDS",
]
