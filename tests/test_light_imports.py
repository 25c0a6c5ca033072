"""Reading a run does not load the simulator: plotting and the run-folder readers import neither Brian2 nor sympy.

Each check runs in a fresh interpreter (this one has long imported both) and lists what it loaded.
"""

import json
import subprocess
import sys

import pytest
from recorded_run import recorded_run

HEAVY = ("brian2", "sympy")

READERS = """
import decolle_brian.plotting
from decolle_brian.plotting import *
import decolle_brian.plotting.activity, decolle_brian.plotting.cli, decolle_brian.plotting.data
import decolle_brian.plotting.metrics, decolle_brian.plotting.plasticity, decolle_brian.plotting.run
import decolle_brian.plotting.style
from decolle_brian.recording import DATASETS, FILENAME, RecordingFile, open_recordings
from decolle_brian.store import read_checkpoint, read_metrics
"""


def _loaded(code: str) -> list[str]:
    """Top-level names of the heavy packages that ``code`` loaded in a fresh interpreter."""
    loaded = f"sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})"
    probe = f"{code}\nimport json, sys\nprint(json.dumps({loaded}))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_readers_and_plotting_import_neither_brian2_nor_sympy():
    assert _loaded(READERS) == []


def test_the_probe_sees_a_heavy_import():
    assert _loaded("import decolle_brian.recording.recorder") == sorted(HEAVY)  # the recorder needs both


@pytest.mark.standalone
def test_drawing_a_recorded_run_imports_neither(tmp_path_factory, tmp_path):
    run_dir = recorded_run(tmp_path_factory)
    code = ("import matplotlib\nmatplotlib.use('Agg')\nfrom decolle_brian.plotting import RunData, plot_run\n"
            f"written = plot_run({str(run_dir)!r}, {str(tmp_path)!r}, progress=False)\n"
            "assert any(p.name.startswith('raster_') for p in written), written\n"
            f"with RunData({str(run_dir)!r}) as run:\n    run.metrics, run.summary, run.weights()\n")
    assert _loaded(code) == []
