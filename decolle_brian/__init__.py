"""DECOLLE (Deep Continuous Local Learning) as Brian2 simulations, with plasticity rules derived by sympy.

What a study script needs, importable from here::

    import decolle_brian as db
    run_dir = db.train(db.load_config("runs/digits.toml"))          # learn; a run folder
    with db.RunData(run_dir) as run:                                # read it back (no Brian2 needed)
        db.save(db.plot_learning_curves(run.metrics), "figures", "learning_curves")

The names are imported on first use (PEP 562 module ``__getattr__``): ``import decolle_brian`` and
``import decolle_brian.plotting`` import neither Brian2 nor sympy; ``db.Simulator`` imports the simulator.
``__all__`` lists them, grouped as the layers of the package (see the README's Architecture section).
"""

from decolle_brian._version import __version__

#: public name -> the module that defines it
_EXPORTS = {
    # errors (each carries the CLI's exit code)
    **dict.fromkeys(("DecolleError", "ConfigError", "SpecError", "DerivationError", "DataError", "DeviceError",
                     "StoreError", "Interrupted"), "decolle_brian.errors"),
    # configuration
    **dict.fromkeys(("load_config", "network_spec"), "decolle_brian.config"),
    # the network: its specification, parameters and inputs
    **dict.fromkeys(("NetworkSpec", "NeuronParams", "DenseLayerSpec", "ConvLayerSpec", "LearningSpec"),
                    "decolle_brian.network.spec"),
    "init_params": "decolle_brian.network.params",
    **dict.fromkeys(("ChunkInputs", "Slot", "pack_chunk", "plan_chunks"), "decolle_brian.network.chunks"),
    # the derived plasticity rule
    "derive": "decolle_brian.derivation",
    # running a network on a Brian device
    **dict.fromkeys(("Simulator", "ChunkOutputs"), "decolle_brian.devices"),
    # learning and evaluating
    **dict.fromkeys(("train", "evaluate_run", "Experiment"), "decolle_brian.experiment"),
    **dict.fromkeys(("train_epoch", "evaluate_dataset", "majority_vote"), "decolle_brian.training"),
    # data
    **dict.fromkeys(("load_dataset", "DATASETS"), "decolle_brian.data"),
    "Sample": "decolle_brian.data.samples",
    # recording and reading runs back
    **dict.fromkeys(("RecordingPlan", "RecordingFile", "open_recordings"), "decolle_brian.recording"),
    **dict.fromkeys(("read_metrics", "read_checkpoint"), "decolle_brian.store"),
    # figures
    **dict.fromkeys(("RunData", "SampleData", "plot_run", "plot_traces", "plot_raster", "plot_readout",
                     "plot_firing_rates", "plot_learning_curves", "plot_confusion", "plot_synops",
                     "plot_three_factors", "plot_weight_heatmaps", "plot_weight_histograms", "save"),
                    "decolle_brian.plotting"),
    # sweeps
    **dict.fromkeys(("load_sweep", "run_sweep", "read_sweep_csv"), "decolle_brian.sweep"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module  # noqa: PLC0415 - only when a name is first used

    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
