"""What differs between body models, looked up by name (no torch, no model files).

Code outside ``body/`` never compares a body model's name to a string: it asks
:func:`body_traits` (when it has only the name, e.g. from a checkpoint or a motion file) or
``BodyModel.traits`` (when it has the model). Adding a backend = one class plus one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

from key2mesh.errors import Key2MeshError


@dataclass(frozen=True)
class BodyTraits:
    """The differences between body models that callers act on.

    name: backend name (``load_body_model``'s first argument).
    shape_key: the motion-table key of the shape parameters (``betas`` / ``phenotypes``).
    shape_names_key: the key naming each shape column, or None when columns are unnamed.
    shape_bounds: (low, high) box the shape parameters live in, or None when unbounded.
    supports_amass: its parameters can be written as AMASS / SMPL ``.npz`` files.
    full_mesh: options that turn the training-size mesh into the full output mesh (same rig).
    drives_all_smpl_joints: all 24 SMPL joints carry a rotation (else feet / hands only end chains).
    reads_model_dir: the model files come from a user folder (``--smpl-dir``, ``model_dir=``).
    retargets_smpl_rotations: SMPL MoCap rotations must be retargeted to the body's own rig.
    has_shape_prior: ``BodyModel.sample_prior_shapes`` draws realistic shapes (else N(0, I)).
    """

    name: str
    shape_key: str
    shape_names_key: str | None
    shape_bounds: tuple[float, float] | None
    supports_amass: bool
    full_mesh: tuple[tuple[str, str], ...]
    drives_all_smpl_joints: bool
    reads_model_dir: bool
    retargets_smpl_rotations: bool
    has_shape_prior: bool

    @property
    def full_mesh_options(self) -> dict[str, str]:
        """``load_body_model`` options for the full output mesh ({} when it is already full)."""
        return dict(self.full_mesh)

    def model_dir_options(self, model_dir: str | None) -> dict[str, str | None]:
        """``{"model_dir": model_dir}`` for a body read from a user folder, else {}."""
        return {"model_dir": model_dir} if self.reads_model_dir else {}


TRAITS: dict[str, BodyTraits] = {
    "anny": BodyTraits(
        name="anny",
        shape_key="phenotypes",
        shape_names_key="phenotype_names",
        shape_bounds=(0.0, 1.0),
        supports_amass=False,
        full_mesh=(("topology", "anny"),),
        drives_all_smpl_joints=False,
        reads_model_dir=False,
        retargets_smpl_rotations=True,
        has_shape_prior=True,
    ),
    "smpl": BodyTraits(
        name="smpl",
        shape_key="betas",
        shape_names_key=None,
        shape_bounds=None,
        supports_amass=True,
        full_mesh=(),
        drives_all_smpl_joints=True,
        reads_model_dir=True,
        retargets_smpl_rotations=False,
        has_shape_prior=False,
    ),
}


def body_traits(name: str) -> BodyTraits:
    """The :class:`BodyTraits` of a body model by name (case-insensitive)."""
    traits = TRAITS.get(str(name).lower())
    if traits is None:
        raise Key2MeshError(f"unknown body model {name!r}; available: {', '.join(TRAITS)}")
    return traits
