"""SMPL ``.pkl`` model files read as data: an unpickler that resolves only the globals an SMPL
file needs (numpy arrays and dtypes, numpy scalars, a scipy CSC matrix, chumpy objects, and
protocol 0-2 helpers), so a crafted file cannot run code. Any other global is refused with one
line naming the file and the global. chumpy objects become :class:`Chumpy` stand-ins (chumpy is
never imported)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import scipy.sparse

from key2mesh.errors import Key2MeshError

# Python 2 module names in protocol 0-2 pickles (what SMPL's original files were written with).
_PY2_NAMES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class Chumpy:
    """Stand-in for chumpy objects in SMPL's original pickles (keeps their state only)."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        self.__dict__["_state"] = state


def _latin1(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for bytes (latin1 only)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}: only latin1 text is read")
    return text.encode("latin1", errors)


_CLASSES = (np.ndarray, np.dtype, scipy.sparse.csc_matrix, Chumpy)


def _reconstructor(cls, base, state):
    """``copyreg._reconstructor`` (protocols 0-1) for the allowed classes only."""
    if cls not in _CLASSES or base is not object or state is not None:
        raise pickle.UnpicklingError(f"copyreg._reconstructor of {cls!r} is not read")
    return object.__new__(cls)


def _allowed() -> dict[tuple[str, str], object]:
    """(module, name) → the object it stands for, under every module name numpy/scipy used."""
    reconstruct = np.ndarray.__reduce__(np.empty(0))[0]
    scalar = np.float64(0).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5
    table: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("builtins", "object"): object,
        ("_codecs", "encode"): _latin1,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = reconstruct
        table[(module, "scalar")] = scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(module, "_frombuffer")] = frombuffer
    for module in ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse"):
        table[(module, "csc_matrix")] = scipy.sparse.csc_matrix
    return table


_ALLOWED = _allowed()


class _SMPLUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str):
        module = _PY2_NAMES.get(module, module)
        if module.split(".")[0] == "chumpy":
            return Chumpy
        found = _ALLOWED.get((module, name))
        if found is None:
            raise Key2MeshError(
                f"{self.path}: refused {module}.{name}: SMPL model files hold only numpy arrays, "
                "scipy sparse matrices and chumpy values (loading this one could run code)"
            )
        return found


def load_smpl_pickle(path: str | Path):
    """The object pickled in ``path``, read with only SMPL's globals allowed."""
    path = Path(path)
    with open(path, "rb") as fh:
        return _SMPLUnpickler(fh, path).load()
