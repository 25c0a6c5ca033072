"""Parameter sweeps: a base configuration, axes over any of its keys, seeds; run on a local pool of worker
processes or on a Dask cluster, one run-store run per point, one compile per network structure.

See ``docs/sweeps.md``; entry points: ``decolle-brian sweep`` (:mod:`decolle_brian.sweep.cli`),
:func:`load_sweep`, :func:`run_sweep`, :func:`read_sweep_csv`, :func:`decolle_brian.sweep.plots.plot_sweep`.
"""

from decolle_brian.sweep.execute import SweepDir, read_sweep_csv, run_sweep
from decolle_brian.sweep.spec import Axis, Point, SweepError, SweepSpec, load_sweep, parse_sweep

__all__ = ["Axis", "Point", "SweepDir", "SweepError", "SweepSpec", "load_sweep", "parse_sweep", "read_sweep_csv",
           "run_sweep"]
