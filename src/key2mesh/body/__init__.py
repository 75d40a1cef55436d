"""Body models behind one interface: anny (default, bundled) and SMPL (user-supplied files)."""

from __future__ import annotations

from key2mesh.body.base import BodyModel, BodyOutput
from key2mesh.body.traits import TRAITS, BodyTraits, body_traits
from key2mesh.errors import Key2MeshError

BACKENDS = tuple(TRAITS)


# the options each backend takes (its ``config()`` keys besides ``name``)
_OPTIONS = {"anny": ("rig", "topology"), "smpl": ("model_dir", "gender", "joint_regressor_h36m")}


def load_body_model(name: str = "anny", device: str | None = None, **options) -> BodyModel:
    """Build a body model by backend name.

    anny options: ``rig``, ``topology`` (defaults: the fast training rig and 1,229-vertex mesh;
    ``topology="anny"`` is the full mesh for output). smpl options: ``model_dir`` (else
    ``$KEY2MESH_SMPL_DIR``), ``gender`` (neutral/male/female).
    """
    name = name.lower()
    if name not in _OPTIONS:
        raise Key2MeshError(f"unknown body model {name!r}; available: {', '.join(BACKENDS)}")
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:  # a typo ('topolgy') was dropped silently: the default body was built
        raise Key2MeshError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for the {name} body model; "
            f"it takes {', '.join(_OPTIONS[name])}"
        )
    if name == "anny":
        from key2mesh.body.anny_backend import AnnyBody

        model: BodyModel = AnnyBody(**options)
    else:
        from key2mesh.body.smpl_backend import SMPLBody

        model = SMPLBody(**options)
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
