"""Recording during learning: a plan checked before compiling, a recorder, and the run's ``recordings.h5``.

What is recorded is set by the ``[recording]`` table of a configuration (docs/recording.md has the file
layout). The recorded samples run through the SAME compiled network as all the others: when recording is
on, the experiment builds its one Simulator with :class:`~decolle_brian.network.builder.Probes` whose
neuron and synapse indices are compiled into the monitors, so every chunk records only the chosen neurons
(cost independent of the network size) and the spikes (sparse SpikeMonitors).

Three modules, one job each:

- :mod:`~decolle_brian.recording.plan`: :class:`RecordingPlan`, what to record, checked and sized before
  anything is compiled;
- :mod:`~decolle_brian.recording.recorder`: :class:`Recorder`, the training-loop callback that writes
  samples and weight snapshots;
- :mod:`~decolle_brian.recording.file`: :class:`RecordingFile` and :func:`open_recordings`, the HDF5 file
  (h5py and NumPy only).

The names below are exported lazily (PEP 562): ``from decolle_brian.recording import open_recordings``
loads only the file module, so reading recordings never imports Brian2 or sympy.
"""

from __future__ import annotations

from decolle_brian.lazy import lazy_exports

#: public name -> submodule that defines it
_EXPORTS = {
    "DATASETS": "file", "FILENAME": "file", "FORMAT_VERSION": "file", "RecordingFile": "file",
    "open_recordings": "file",
    "AUTO_FULL_MAX": "plan", "DATASET_OVERHEAD": "plan", "HIST_BINS": "plan", "SNAPSHOT_VARIABLES": "plan",
    "TRACE_VARIABLES": "plan", "VARIABLES": "plan", "RecordingPlan": "plan",
    "Recorder": "recorder", "surrogate_function": "recorder",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
