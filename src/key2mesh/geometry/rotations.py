"""Rotation representations, thin wrappers over :mod:`roma`.

6D layout (Zhou et al. 2019): the first two *columns* of the rotation matrix, stored row-major
as ``R[..., :, :2].reshape(..., 6)`` = ``[r00, r01, r10, r11, r20, r21]``.
"""

from __future__ import annotations

import math

import roma
import torch


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) → (..., 3, 3) by Gram-Schmidt on the two columns (differentiable)."""
    if x.shape[-1] != 6:
        raise ValueError(f"6D rotations need a last dimension of 6, got shape {tuple(x.shape)}")
    return roma.special_gramschmidt(x.reshape(*x.shape[:-1], 3, 2))


def matrix_to_rot6d(r: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) → (..., 6): the first two columns."""
    return r[..., :, :2].reshape(*r.shape[:-2], 6)


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) in radians → (..., 3, 3)."""
    return roma.rotvec_to_rotmat(v)


def matrix_to_axis_angle(r: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) → axis-angle (..., 3) in radians."""
    return roma.rotmat_to_rotvec(r)


def _axis_rotation(angle: torch.Tensor | float, axis: int) -> torch.Tensor:
    a = torch.as_tensor(
        angle, dtype=torch.get_default_dtype() if not torch.is_tensor(angle) else angle.dtype
    )
    c, s = torch.cos(a), torch.sin(a)
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    rows = [[one if r == c_ else zero for c_ in range(3)] for r in range(3)]
    rows[i][i], rows[i][j], rows[j][i], rows[j][j] = c, -s, s, c
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def rotation_x(angle: torch.Tensor | float) -> torch.Tensor:
    """Right-handed rotation about x by ``angle`` radians; (...,) → (..., 3, 3)."""
    return _axis_rotation(angle, 0)


def rotation_y(angle: torch.Tensor | float) -> torch.Tensor:
    """Right-handed rotation about y by ``angle`` radians; (...,) → (..., 3, 3)."""
    return _axis_rotation(angle, 1)


def rotation_z(angle: torch.Tensor | float) -> torch.Tensor:
    """Right-handed rotation about z by ``angle`` radians; (...,) → (..., 3, 3)."""
    return _axis_rotation(angle, 2)


DEG = math.pi / 180.0
