"""Figures of a run: every figure is drawn from the run folder, is not blank, and shows the stored data.

Data are read back from the matplotlib artists (found by their ``gid``) and compared with recordings.h5,
metrics.csv and summary.json of the tiny recorded run (tests/recorded_run.py).
"""

import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.image import imread  # noqa: E402
from recorded_run import recorded_run  # noqa: E402

from decolle_brian.cli import main  # noqa: E402
from decolle_brian.plotting import (  # noqa: E402
    RunData,
    plot_confusion,
    plot_firing_rates,
    plot_learning_curves,
    plot_raster,
    plot_readout,
    plot_synops,
    plot_three_factors,
    plot_traces,
    plot_weight_heatmaps,
    plot_weight_histograms,
)
from decolle_brian.plotting.plasticity import histogram_density  # noqa: E402
from decolle_brian.plotting.style import parse_formats  # noqa: E402

pytestmark = pytest.mark.standalone
PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return recorded_run(tmp_path_factory)


@pytest.fixture(scope="module")
def run(run_dir):
    with RunData(run_dir) as data:
        yield data


@pytest.fixture(scope="module")
def train_sample(run):
    return run.sample(run.samples("train")[-1]["name"])


@pytest.fixture(scope="module")
def active_sample(run):
    """The recorded sample in which the recorded neurons of layer 1 spike most."""
    def recorded_spikes(row):
        sample = run.sample(row["name"])
        return int(sample.arrays["L1/s"][:, sample.neurons[1]].sum())
    return run.sample(max(run.samples(), key=recorded_spikes)["name"])


@pytest.fixture(scope="module")
def test_sample(run):
    return run.sample(run.samples("test")[-1]["name"])


def _by_gid(fig, gid):
    found = [a for a in fig.findobj() if a.get_gid() == gid]
    assert found, f"no artist with gid {gid}"
    return found


def _one(fig, gid):
    (artist,) = _by_gid(fig, gid)
    return artist


# ---- the command: every figure, in every format, not blank --------------------------------------------------------
def test_plot_command_writes_every_figure(run_dir, run, tmp_path, capsys):
    out = tmp_path / "figures"
    assert main(["plot", str(run_dir), "--format", "png,pdf,svg", "--out", str(out)]) == 0
    assert "figure files written" in capsys.readouterr().out
    train_name, test_name = run.default_samples()
    expected = {"learning_curves", "synops", "confusion", "weights", "weight_histograms", "firing_rates"}
    for name in (train_name, test_name):
        expected |= {f"raster_{name}", f"readout_{name}", f"traces_L1_{name}", f"traces_L2_{name}"}
    expected |= {f"three_factors_L1_{train_name}", f"three_factors_L2_{train_name}"}  # learning samples only
    pngs = {p.stem for p in out.glob("*.png")}
    assert pngs == expected
    for stem in expected:
        image = imread(out / f"{stem}.png")
        assert image.shape[0] > 300 and image.shape[1] > 1000, stem  # paper width at 200 dpi
        assert image[..., :3].std() > 0.05, f"{stem}.png looks blank"
        for fmt in ("pdf", "svg"):
            assert (out / f"{stem}.{fmt}").stat().st_size > 5000, f"{stem}.{fmt}"
    assert sorted(json.loads((out / "figures.json").read_text())) == sorted(
        f"{s}.{f}" for s in expected for f in ("png", "pdf", "svg"))


def test_plot_default_folder_and_errors(run_dir, tmp_path, capsys):
    assert main(["plot", str(run_dir)]) == 0
    assert (run_dir / "figures" / "learning_curves.png").is_file()
    assert main(["plot", str(run_dir), "--format", "gif"]) == 2
    assert main(["plot", str(tmp_path)]) == 5
    assert "not a run folder" in capsys.readouterr().err
    assert main(["plot", str(run_dir.parent)]) == 0  # a folder of runs: each run's figures
    with pytest.raises(ValueError):
        parse_formats("png,bmp")


# ---- plotted data = stored data ------------------------------------------------------------------------------------
def test_raster_shows_the_stored_spikes(train_sample):
    fig = plot_raster(train_sample)
    for k in (1, 2):
        spikes = train_sample.arrays[f"L{k}/s"]
        offsets = _one(fig, f"raster-L{k}").get_offsets()
        assert len(offsets) == spikes.sum() > 0
        t, i = np.nonzero(spikes)
        np.testing.assert_array_equal(np.asarray(offsets), np.stack([t * 1.0, i], axis=1))
    events = train_sample.arrays["input"]
    plotted = np.concatenate([np.asarray(c.get_offsets()) for c in _by_gid(fig, "raster-input")])
    assert len(plotted) == np.count_nonzero(events)


def test_traces_show_the_stored_values(active_sample):
    train_sample = active_sample
    fig = plot_traces(train_sample, 1)
    recorded = train_sample.neurons[1]
    shown = [int(a.get_gid().rsplit("-", 1)[1]) for a in fig.findobj() if str(a.get_gid()).startswith("trace-L1-u-")]
    assert len(shown) == 3
    for neuron in shown:
        col = int(np.flatnonzero(recorded == neuron)[0])
        for v in ("u", "r", "q", "p"):
            line = _one(fig, f"trace-L1-{v}-{neuron}")
            np.testing.assert_array_equal(line.get_ydata(), train_sample.arrays[f"L1/{v}"][:, col])
            np.testing.assert_array_equal(line.get_xdata(), train_sample.arrays["t_ms"])
        spikes = _one(fig, f"spikes-L1-{neuron}")
        np.testing.assert_array_equal(spikes.get_xdata(), np.flatnonzero(train_sample.arrays["L1/s"][:, neuron]))
    counts = train_sample.arrays["L1/s"][:, shown].sum(axis=0)
    assert counts.max() > 0 and list(counts) == sorted(counts, reverse=True)  # the most active first


def test_readout_shows_the_stored_values(test_sample):
    fig = plot_readout(test_sample)
    label = test_sample.meta["label"]
    for k in (1, 2):
        y = test_sample.arrays[f"L{k}/y"]
        for c in range(10):
            np.testing.assert_array_equal(_one(fig, f"readout-L{k}-y{c}").get_ydata(), y[:, c])
        np.testing.assert_array_equal(_one(fig, f"readout-L{k}-target").get_ydata(),
                                      test_sample.arrays["target"][:, label])
        assert set(test_sample.arrays["target"][:, label]) == {1.0}


def test_three_factors_show_the_stored_values(train_sample):
    fig = plot_three_factors(train_sample, 2)
    a = train_sample.arrays
    shown = sorted({int(x.get_gid().rsplit("-", 1)[1]) for x in fig.findobj()
                    if str(x.get_gid()).startswith("factor-L2-syn_dw-")})
    assert shown
    for s in shown:
        for key in ("syn_bp", "syn_sigma", "syn_p", "syn_dw"):
            np.testing.assert_array_equal(_one(fig, f"factor-L2-{key}-{s}").get_ydata(), a[f"L2/{key}"][:, s])
        g = a["L2/syn_bp"][:, s] * a["L2/syn_sigma"][:, s] * a["L2/syn_p"][:, s]
        np.testing.assert_array_equal(_one(fig, f"factor-L2-g-{s}").get_ydata(), g)
        sgd = _one(fig, f"factor-L2-sgd-{s}").get_ydata()  # the run uses SGD: -eta g is the change
        np.testing.assert_allclose(sgd, a["L2/syn_dw"][:, s], rtol=1e-9, atol=1e-15)


def test_weight_figures_show_the_stored_weights(run):
    weights = run.weights()
    fig = plot_weight_heatmaps(weights)
    last = len(weights["samples_seen"]) - 1
    for k in (1, 2):
        for s in (0, last):
            np.testing.assert_array_equal(_one(fig, f"weights-L{k}-{s}").get_array(), weights[f"L{k}/W"][s])
        np.testing.assert_array_equal(_one(fig, f"weights-L{k}-change").get_array(),
                                      weights[f"L{k}/W"][last] - weights[f"L{k}/W"][0])
    fig = plot_weight_histograms(weights)
    for k in (1, 2):
        for s in range(len(weights["samples_seen"])):
            values, edges, _ = _one(fig, f"whist-L{k}-{s}").get_data()
            np.testing.assert_array_equal(edges, weights[f"L{k}/W_hist_edges"][s])
            np.testing.assert_allclose(values, histogram_density(weights[f"L{k}/W_hist"][s], edges))
            assert np.sum(values * np.diff(edges)) == pytest.approx(1.0)


def test_metric_figures_show_the_stored_metrics(run):
    rows, summary = run.metrics, run.summary
    fig = plot_learning_curves(rows, 10)
    for k in (1, 2):
        for split in ("train", "test"):
            sel = [r for r in rows if r["split"] == split]
            np.testing.assert_array_equal(_one(fig, f"loss-L{k}-{split}").get_ydata(), [r[f"loss_L{k}"] for r in sel])
            np.testing.assert_allclose(_one(fig, f"acc-L{k}-{split}").get_ydata(),
                                       [100 * r[f"acc_L{k}"] for r in sel])
        test = [r for r in rows if r["split"] == "test"]
        np.testing.assert_allclose(_one(fig, f"err-L{k}-test").get_ydata(), [100 - 100 * r[f"acc_L{k}"] for r in test])
    fig = plot_confusion(summary)
    for k in (1, 2):
        np.testing.assert_array_equal(_one(fig, f"confusion-L{k}").get_array(), summary["confusion"][k - 1])
    fig = plot_synops(rows, summary, dense_ops=[1e5, 1e4])
    assert [b.get_height() for b in _by_gid(fig, "synops-final")] == summary["synops_per_sample"]
    test_rows = [r for r in rows if r["split"] == "test"]
    np.testing.assert_array_equal(_one(fig, "synops-L1").get_ydata(), [r["synops_L1"] for r in test_rows])


def test_firing_rates_come_from_the_stored_spikes(run):
    samples = [run.sample(r["name"]) for r in run.samples("test") if r["epoch"] == 2]
    fig = plot_firing_rates(samples, run.metrics)
    for k, n in ((1, 16), (2, 12)):
        heights = [p.get_height() for p in _by_gid(fig, f"rates-L{k}")]
        assert sum(heights) == n  # every neuron of the layer once
        spikes = sum(int(s.arrays[f"L{k}/s"].sum()) for s in samples)
        mean = 1000.0 * spikes / (n * sum(s.meta["n_steps"] for s in samples))
        line = [a for a in fig.axes[k - 1].get_lines() if a.get_label().startswith("mean")]
        assert line[0].get_xdata()[0] == pytest.approx(mean)


# ---- analysis scripts ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script, args", [
    ("plasticity_dynamics.py", ["--layer", "2"]),
    ("accuracy_vs_depth.py", []),
    ("compare_surrogates.py", []),
])
def test_analysis_scripts_run_on_a_stored_run(run_dir, tmp_path, script, args):
    result = subprocess.run([sys.executable, str(PROJECT / "analysis" / script), str(run_dir), *args,
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    pngs = list(tmp_path.glob("*.png"))
    assert pngs, result.stdout
    for png in pngs:
        assert imread(png)[..., :3].std() > 0.05, png.name
