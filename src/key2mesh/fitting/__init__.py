"""Optimisation-based fitting (SMPLify-style): the baseline of ``key2mesh fit`` and the
refinement of a Key2Mesh prediction (``--init-from``). See :mod:`key2mesh.fitting.smplify`."""
