"""Export a trained run to other simulators and hardware: ``decolle-brian export RUN_DIR --format FORMAT``.

:data:`EXPORTERS` maps a format name to ``export(run_dir, out=None, data_root=None) -> Path``; the command's
``--format`` choices are its keys. Exporters read the run through :mod:`decolle_brian.store` and need no Brian2.
"""

from __future__ import annotations

from decolle_brian.export.to_nir import export_nir

#: format name -> exporter ``(run_dir, out=None, data_root=None) -> path written``
EXPORTERS = {"nir": export_nir}

__all__ = ["EXPORTERS", "export_nir"]
