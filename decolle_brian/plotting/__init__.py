"""Figures of a run, drawn only from what its run folder stored (``decolle-brian plot RUN_DIR``).

Every function returns a :class:`matplotlib.figure.Figure` (no pyplot state); :func:`plot_run` draws every
figure a run folder supports and writes them to ``RUN_DIR/figures/``.
"""

from decolle_brian.plotting.activity import plot_firing_rates, plot_raster, plot_readout, plot_traces
from decolle_brian.plotting.data import RunData, SampleData
from decolle_brian.plotting.metrics import plot_confusion, plot_learning_curves, plot_synops
from decolle_brian.plotting.plasticity import plot_three_factors, plot_weight_heatmaps, plot_weight_histograms
from decolle_brian.plotting.run import plot_run
from decolle_brian.plotting.style import save

__all__ = [
    "RunData", "SampleData", "plot_confusion", "plot_firing_rates", "plot_learning_curves", "plot_raster",
    "plot_readout", "plot_run", "plot_synops", "plot_three_factors", "plot_traces", "plot_weight_heatmaps",
    "plot_weight_histograms", "save",
]
