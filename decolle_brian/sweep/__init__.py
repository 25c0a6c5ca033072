"""Parameter sweeps: a base configuration, axes over any of its keys, seeds; run on a local pool of worker
processes or on a Dask cluster, one run-store run per point, one compile per network structure.

See ``docs/sweeps.md``; entry points: ``decolle-brian sweep`` (:mod:`decolle_brian.sweep.cli`),
:func:`load_sweep`, :func:`run_sweep`, :func:`read_sweep_csv`, :func:`decolle_brian.sweep.plots.plot_sweep`.
The names below are imported on first use, so reading a finished sweep (:mod:`decolle_brian.sweep.folder`,
:mod:`decolle_brian.sweep.plots`) does not import Brian2.
"""

from importlib import import_module

_EXPORTS = {
    "SweepDir": "execute", "run_sweep": "execute",
    "read_sweep_csv": "folder",
    "Axis": "spec", "Point": "spec", "SweepSpec": "spec", "load_sweep": "spec", "parse_sweep": "spec",
    "SweepError": "spec",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
