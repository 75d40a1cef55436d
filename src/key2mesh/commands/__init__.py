"""Sub-commands of the ``key2mesh`` CLI (see :mod:`key2mesh.cli`)."""
