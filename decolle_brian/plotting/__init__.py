"""Figures of a run, drawn only from what its run folder stored (``decolle-brian plot RUN_DIR``).

Every function returns a :class:`matplotlib.figure.Figure` (no pyplot state); :func:`plot_run` draws every
figure a run folder supports and writes them to ``RUN_DIR/figures/``.

Nothing here imports Brian2 or sympy: a run is read from its files (:mod:`decolle_brian.store`,
:mod:`decolle_brian.recording.file`). The names below are exported lazily (PEP 562), so that
``import decolle_brian.plotting`` costs nothing until a figure function is used (matplotlib loads then).
"""

from __future__ import annotations

from decolle_brian.lazy import lazy_exports

#: public name -> submodule that defines it
_EXPORTS = {
    "plot_firing_rates": "activity", "plot_raster": "activity", "plot_readout": "activity", "plot_traces": "activity",
    "RunData": "data", "SampleData": "data",
    "plot_confusion": "metrics", "plot_learning_curves": "metrics", "plot_synops": "metrics",
    "plot_three_factors": "plasticity", "plot_weight_heatmaps": "plasticity", "plot_weight_histograms": "plasticity",
    "plot_run": "run",
    "save": "style",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
