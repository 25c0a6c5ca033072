"""Recording during learning: recordings.h5 layout and round trip, consistency with the model, size cap.

The recorded run (tests/recorded_run.py) is trained once per session on the C++ standalone device; the file
round trip, the plan checks and the size cap need no compiled network.
"""


import h5py
import numpy as np
import pytest
from recorded_run import TINY_RECORDED, recorded_run, write_config

from decolle_brian.cli import main
from decolle_brian.config import ConfigError, load_config
from decolle_brian.derivation import derive
from decolle_brian.experiment import Experiment, Interrupted, train
from decolle_brian.recording import (
    DATASET_OVERHEAD,
    DATASETS,
    FILENAME,
    RecordingFile,
    RecordingPlan,
    open_recordings,
    surrogate_function,
)
from decolle_brian.store import read_checkpoint


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return recorded_run(tmp_path_factory)


@pytest.fixture(scope="module")
def rec(run_dir):
    with open_recordings(run_dir) as f:
        yield f


# ---- the file, without a network -------------------------------------------------------------------------------
def test_round_trip(tmp_path):
    """Written arrays come back identical, with dtype, unit and time axis; snapshots append; truncation."""
    rng = np.random.default_rng(0)
    neurons = {0: np.array([1, 4]), 1: np.array([0, 2, 3])}
    synapses = {1: np.array([[0, 1], [3, 4]])}
    arrays = {"t_ms": np.arange(0.0, 20.0, 2.0), "eta": rng.random(10), "target": np.eye(3)[np.zeros(10, int)],
              "input": rng.integers(0, 5, (20, 6)).astype(np.uint8), "L0/p": rng.random((10, 2)),
              "L1/u": rng.normal(size=(10, 3)), "L1/s": rng.integers(0, 2, (20, 5)).astype(np.uint8),
              "L1/syn_dw": rng.normal(size=(10, 2)), "L1/y": rng.normal(size=(10, 3))}
    meta = dict(name="train-000000007", split="train", epoch=1, samples_seen=7, dataset_index=3, label=2,
                n_steps=20, predictions=[1, 2])
    with RecordingFile(tmp_path / FILENAME, "w") as f:
        f.init_layout({"dt_ms": 1.0, "every_steps": 2}, neurons, synapses)
        f.add_sample(meta, arrays)
        f.add_sample({**meta, "name": "test-e0001-0000004", "split": "test", "samples_seen": 40}, arrays)
        for seen, tag in ((0, "start"), (16, "periodic"), (40, "end")):
            f.add_snapshot(seen, seen // 20, tag, {"L1/W": np.full((3, 2), float(seen)), "L1/b": np.arange(3.0)})
    with RecordingFile(tmp_path / FILENAME) as f:
        assert f.attrs["every_steps"] == 2 and f.attrs["dt_ms"] == 1.0
        assert {k: v.tolist() for k, v in f.neurons().items()} == {k: v.tolist() for k, v in neurons.items()}
        np.testing.assert_array_equal(f.synapses()[1], synapses[1])
        assert [r["name"] for r in f.index()] == ["train-000000007", "test-e0001-0000004"]
        assert f.index("train")[0] == {k: meta[k] for k in meta if k != "predictions"}
        got_meta, got = f.sample("train-000000007")
        assert got_meta["predictions"].tolist() == [1, 2]
        assert set(got) == set(arrays)
        for path, array in arrays.items():
            assert got[path].dtype == array.dtype, path
            np.testing.assert_array_equal(got[path], array, err_msg=path)
            unit, axis, _ = DATASETS[path.rsplit("/", 1)[-1]]
            attrs = f.dataset_attrs(f"samples/train-000000007/{path}")
            assert (attrs["unit"], attrs["time_axis"]) == (unit, axis), path
        assert f.dataset_attrs("samples/train-000000007/t_ms")["unit"] == "ms"
        weights = f.weights()
        assert weights["samples_seen"].tolist() == [0, 16, 40]
        assert weights["tag"].tolist() == ["start", "periodic", "end"]
        np.testing.assert_array_equal(weights["L1/W"][1], np.full((3, 2), 16.0))
    # resume after a checkpoint at 16 samples, epoch 0 done: later entries go, earlier stay
    with RecordingFile(tmp_path / FILENAME, "a") as f:
        assert f.truncate(samples_seen=16, epochs_done=0) == 2
        assert [r["name"] for r in f.index()] == ["train-000000007"]
        assert f.weights()["samples_seen"].tolist() == [0, 16]
        f.add_snapshot(20, 1, "end", {"L1/W": np.zeros((3, 2)), "L1/b": np.zeros(3)})
        assert f.weights()["L1/W"].shape == (3, 3, 2)


def test_surrogate_function_of_every_builtin():
    u = np.linspace(-2, 2, 41)
    np.testing.assert_allclose(surrogate_function(derive("smoothl1", "fast_sigmoid").surrogate)(u),
                               1 / (10 * np.abs(u) + 1) ** 2)
    np.testing.assert_array_equal(surrogate_function(derive("smoothl1", "boxcar").surrogate)(u),
                                  ((u > -0.5) & (u <= 0.5)).astype(float))
    sig = surrogate_function(derive("smoothl1", "sigmoid", slope=2.0).surrogate)(u)
    np.testing.assert_allclose(sig, 2 * np.exp(-2 * u) / (1 + np.exp(-2 * u)) ** 2)
    assert surrogate_function("1/(1 + abs(u))")(np.array([1.0]))[0] == 0.5  # the stored text form


# ---- the plan: checked before compiling ------------------------------------------------------------------------
def _experiment(tmp_path, *overrides):
    config = load_config(write_config(tmp_path), list(overrides))
    return config, Experiment.from_config(config)


def test_cap_refuses_before_the_run(tmp_path, capsys, monkeypatch):
    """A request over recording.max_mb fails before compiling, with the estimate, and writes nothing."""
    builds = tmp_path / "builds"  # a build would create its per-structure folder here
    monkeypatch.setenv("DECOLLE_BUILD_DIR", str(builds))
    config, _ = _experiment(tmp_path, "recording.max_mb=0.01")
    with pytest.raises(ConfigError, match=r"about \d+\.\d MB .*training samples .*recording.max_mb = 0.01"):
        train(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["train", str(tmp_path / "tinyrec.toml"), "--set", "recording.neurons='all'",
                 "--set", "recording.train_every=1", "--set", "recording.max_mb=0.5",
                 "--out", str(tmp_path / "out")]) == 2
    assert "MB" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert not builds.exists()  # nothing was built or compiled


@pytest.mark.parametrize("override, message", [
    ("recording.variables=['u', 'volts']", "unknown ['volts']"),
    ("recording.layers=[3]", "recording.layers"),
    ("recording.neurons=[0, 99]", "recording.neurons"),
    ("recording.neurons='some'", "recording.neurons"),
    ("recording.test_samples='every:0'", "recording.test_samples"),
    ("recording.weights='most'", "recording.weights"),
])
def test_bad_requests(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config, experiment = _experiment(tmp_path, override)
        RecordingPlan.from_config(config, experiment)


def test_plan_selection_is_seeded_and_probes_only_what_is_recorded(tmp_path):
    config, experiment = _experiment(tmp_path)
    plan = RecordingPlan.from_config(config, experiment)
    again = RecordingPlan.from_config(*_experiment(tmp_path))
    for k in plan.neurons:
        np.testing.assert_array_equal(plan.neurons[k], again.neurons[k])
        assert len(plan.neurons[k]) == 6
    probes = plan.probes()
    assert [len(n) for n in probes.neurons] == [6, 6] and len(probes.input_neurons) == 6
    assert [len(s) for s in probes.synapses] == [3, 3] and probes.spikes
    assert set(plan.synapses[2][:, 1]) <= set(plan.neurons[1])   # presynaptic neurons are recorded ones
    assert RecordingPlan.from_config(*_experiment(tmp_path, "recording.variables=[]")) is None
    weights_only = RecordingPlan.from_config(*_experiment(tmp_path, "recording.variables=['W']"))
    assert weights_only.probes() is None  # the plain network is enough
    assert RecordingPlan.from_config(*_experiment(tmp_path, "recording.layers=[2]")).records_input() is False


# ---- the recorded run ------------------------------------------------------------------------------------------
pytestmark_standalone = pytest.mark.standalone
#: how far the size estimate may exceed the recorded arrays plus DATASET_OVERHEAD per dataset (measured on the
#: recorded run: 1.05, 2.52 MB against 1.22 MB of arrays in 975 datasets; the file itself is 2.05 MB)
ESTIMATE_SLACK = 1.25


@pytestmark_standalone
def test_recorded_samples_and_layout(rec, run_dir):
    attrs = rec.attrs
    assert attrs["format_version"] == 1 and attrs["dt_ms"] == 1.0 and attrs["optimizer"] == "sgd"
    train_rows, test_rows = rec.index("train"), rec.index("test")
    assert [r["samples_seen"] for r in train_rows] == list(range(0, 80, 10))
    assert [r["epoch"] for r in train_rows] == [1] * 4 + [2] * 4
    assert sorted({r["epoch"] for r in test_rows}) == [1, 2]
    assert sorted(r["label"] for r in test_rows if r["epoch"] == 2) == list(range(10))  # first of each class
    meta, arrays = rec.sample(train_rows[0]["name"])
    n, m = meta["n_steps"], 30
    assert arrays["input"].shape == (n, 64) and arrays["t_ms"].tolist() == list(range(m))
    for k, size in ((1, 16), (2, 12)):
        assert arrays[f"L{k}/s"].shape == (n, size) and arrays[f"L{k}/s"].dtype == np.uint8
        for v in ("u", "p", "q", "r", "delta", "bp", "sigma"):
            assert arrays[f"L{k}/{v}"].shape == (m, 6), v
        assert arrays[f"L{k}/y"].shape == (m, 10)
        for v in ("syn_bp", "syn_sigma", "syn_p", "syn_w", "syn_dw"):
            assert arrays[f"L{k}/{v}"].shape == (m, 3), v
    assert arrays["L0/p"].shape == (m, 6)
    with h5py.File(run_dir / FILENAME) as f:  # every dataset says its unit and time axis
        for path in ("samples/" + train_rows[0]["name"] + "/L1/u", "weights/L1/W"):
            assert {"unit", "time_axis", "doc"} <= set(f[path].attrs)


@pytestmark_standalone
def test_traces_agree_with_the_model(rec, run_dir):
    """Time axes line up: spikes where U > 0, delta = bp sigma'(U), input traces follow docs/model.md."""
    rule = derive("smoothl1", "fast_sigmoid")
    sigma = surrogate_function(rule.surrogate)
    config = load_config(run_dir / "config.toml")
    alpha, beta = config["neuron"]["alpha"], config["neuron"]["beta"]
    neurons = rec.neurons()
    spiking = 0
    for row in rec.index():
        _, a = rec.sample(row["name"])
        for k in (1, 2):
            u = a[f"L{k}/u"]
            np.testing.assert_array_equal(a[f"L{k}/s"][:, neurons[k]], (u > 0).astype(np.uint8))
            np.testing.assert_allclose(a[f"L{k}/sigma"], sigma(u), rtol=1e-14)
            np.testing.assert_allclose(a[f"L{k}/delta"], a[f"L{k}/bp"] * a[f"L{k}/sigma"], rtol=1e-12, atol=1e-18)
            spiking += int(a[f"L{k}/s"].sum())
        counts = a["input"][:, neurons[0]].astype(float)
        q, p = np.zeros(len(neurons[0])), np.zeros(len(neurons[0]))
        for t in range(len(counts)):
            p = alpha * p + (1 - alpha) * q
            q = beta * q + (1 - beta) * counts[t]
            np.testing.assert_allclose(a["L0/p"][t], p, atol=1e-12)
            np.testing.assert_allclose(a["L0/q"][t], q, atol=1e-12)
    assert spiking > 0


@pytestmark_standalone
def test_weight_change_is_the_product_of_the_three_factors(rec):
    """SGD: every recorded step's weight change equals -eta bp sigma'(U_post) P_pre, and the factors are
    those of the recorded neurons."""
    neurons, synapses = rec.neurons(), rec.synapses()
    changed = 0
    for row in rec.index("train"):
        _, a = rec.sample(row["name"])
        for k in (1, 2):
            g = a[f"L{k}/syn_bp"] * a[f"L{k}/syn_sigma"] * a[f"L{k}/syn_p"]
            np.testing.assert_allclose(a[f"L{k}/syn_dw"], -a["eta"][:, None] * g, rtol=1e-9, atol=1e-15)
            np.testing.assert_allclose(np.diff(a[f"L{k}/syn_w"], axis=0), a[f"L{k}/syn_dw"][1:], atol=1e-14)
            post, pre = synapses[k].T
            at_post = np.searchsorted(neurons[k], post)
            np.testing.assert_array_equal(a[f"L{k}/syn_bp"], a[f"L{k}/bp"][:, at_post])
            pre_p = a["L0/p"] if k == 1 else a["L1/p"]
            np.testing.assert_array_equal(a[f"L{k}/syn_p"], pre_p[:, np.searchsorted(neurons[k - 1], pre)])
            changed += int(np.count_nonzero(a[f"L{k}/syn_dw"]))
    assert changed > 0, "no recorded weight changed: the test would be weak"


@pytestmark_standalone
def test_weight_snapshots(rec, run_dir):
    weights = rec.weights()
    assert weights["tag"][0] == "start" and weights["tag"][-1] == "end"
    assert weights["samples_seen"][0] == 0 and weights["samples_seen"][-1] == 80
    periodic = weights["samples_seen"][weights["tag"] == "periodic"]
    assert len(periodic) == 5 and all(s % 16 < 4 for s in periodic)  # first chunk boundary after each multiple
    params, _ = read_checkpoint(run_dir)
    for k, key in ((1, "W"), (2, "W")):
        np.testing.assert_array_equal(weights[f"L{k}/{key}"][-1], params[f"layer{k}.{key}"])  # small: stored whole
        np.testing.assert_array_equal(weights[f"L{k}/b"][-1], params[f"layer{k}.b"])
        counts, edges = np.histogram(params[f"layer{k}.W"], bins=weights[f"L{k}/W_hist_edges"][-1])
        np.testing.assert_array_equal(weights[f"L{k}/W_hist"][-1], counts)


@pytestmark_standalone
def test_size_estimate_is_an_upper_bound(run_dir, tmp_path):
    config, experiment = _experiment(tmp_path)
    plan = RecordingPlan.from_config(config, experiment)
    estimate = plan.mb * 1e6
    file_bytes = (run_dir / FILENAME).stat().st_size
    with h5py.File(run_dir / FILENAME, "r") as f:
        arrays = []
        f.visititems(lambda name, obj: arrays.append(obj.size * obj.dtype.itemsize)
                     if isinstance(obj, h5py.Dataset) else None)
    stored = sum(arrays)  # the recorded arrays, uncompressed
    print(f"recording size: estimate {estimate:.0f} B, file {file_bytes} B, arrays {stored} B in {len(arrays)} "
          f"datasets")
    assert file_bytes <= estimate
    assert stored <= estimate
    # and not far above: the estimate is the arrays' uncompressed bytes plus DATASET_OVERHEAD per dataset, so
    # it may exceed the arrays by that bookkeeping and by indexes it does not itemise, but not by a factor
    # (an estimate several times too high refuses requests under recording.max_mb that would fit)
    assert estimate <= ESTIMATE_SLACK * (stored + DATASET_OVERHEAD * len(arrays))


@pytestmark_standalone
def test_resume_records_each_sample_once(run_dir, tmp_path):
    """Interrupted and resumed: the recordings equal those of the uninterrupted run."""
    config = load_config(write_config(tmp_path, TINY_RECORDED))
    with pytest.raises(Interrupted):
        train(config, tmp_path / "out", stop_after_samples=30)
    (resumed,) = (tmp_path / "out" / "tinyrec").iterdir()
    train(None, resume=resumed)
    with open_recordings(resumed) as got, open_recordings(run_dir) as expected:
        assert [r["name"] for r in got.index()] == [r["name"] for r in expected.index()]
        for row in expected.index()[::5]:
            _, a = got.sample(row["name"])
            _, b = expected.sample(row["name"])
            for path in b:
                np.testing.assert_array_equal(a[path], b[path], err_msg=f"{row['name']}/{path}")
        assert got.weights()["samples_seen"].tolist() == expected.weights()["samples_seen"].tolist()


def test_every_steps_subsamples_traces_not_events(tmp_path):
    """Synthetic chunk outputs: traces at steps 0, k, 2k, ...; spikes and input at every step; the weight
    change at a recorded step is that step's change (from the full-resolution weights)."""
    from decolle_brian.devices import ChunkOutputs  # noqa: PLC0415
    from decolle_brian.loop import TrainingState  # noqa: PLC0415
    from decolle_brian.network.chunks import ChunkInputs, Slot  # noqa: PLC0415
    from decolle_brian.recording import Recorder  # noqa: PLC0415

    rng = np.random.default_rng(1)
    steps, start, n = 40, 7, 20  # the sample lies at steps 7..26 of the chunk
    plan = RecordingPlan(
        variables=("u", "s", "y", "dw"), layers=(1,), neurons={0: np.array([0, 2]), 1: np.array([1, 3])},
        synapses={1: np.array([[3, 2]])}, train_every=1, test_indices=np.zeros(0, int), every_steps=3,
        weights_every=0, weights_full={1: True}, max_mb=1.0, layer_sizes=[4, 5], layer_kinds=["dense"],
        n_classes=3, burnin=2)
    monitored = plan.monitored()
    assert monitored[0].tolist() == [2] and monitored[1].tolist() == [1, 3]
    w = np.cumsum(rng.normal(size=(steps, 1)), axis=0)
    outputs = ChunkOutputs(
        params={}, y=[rng.normal(size=(steps, 3))], n_spikes=[np.zeros(steps)],
        probes=[{"u": rng.normal(size=(steps, 2)), "bp": rng.normal(size=(steps, 2))}],
        input_probes={"p": rng.random((steps, 1))}, synapse_w=[w],
        spikes=[(np.array([3, 7, 8, 26, 27]), np.array([0, 1, 4, 2, 2]))])
    inputs = ChunkInputs(counts=rng.integers(0, 3, (steps, 4)).astype(float), targets=np.eye(3)[np.ones(steps, int)],
                         eta=np.full(steps, 0.1), new_sample=np.zeros(steps), masks=None)
    config = {"learning": {"optimizer": "sgd"}, "seed": 0, "recording": {}}
    recorder = Recorder(plan, tmp_path, derive(), config)
    recorder.train_observer(TrainingState())([11], [Slot(start, n, 1)], inputs, outputs, {})
    recorder.close()
    with open_recordings(tmp_path) as f:
        meta, a = f.sample("train-000000000")
    rec = np.arange(start, start + n, 3)
    assert a["t_ms"].tolist() == list(range(0, n, 3)) and meta["dataset_index"] == 11
    np.testing.assert_array_equal(a["L1/u"], outputs.probes[0]["u"][rec])
    np.testing.assert_array_equal(a["L1/y"], outputs.y[0][rec])
    np.testing.assert_array_equal(a["input"], inputs.counts[start:start + n])
    spikes = np.zeros((n, 5), np.uint8)
    spikes[[0, 1, 19], [1, 4, 2]] = 1  # steps 7, 8, 26 of the chunk; 3 and 27 lie outside the sample
    np.testing.assert_array_equal(a["L1/s"], spikes)
    np.testing.assert_array_equal(a["L1/syn_w"], w[rec])
    np.testing.assert_allclose(a["L1/syn_dw"], (w[rec] - w[rec - 1]))
    np.testing.assert_array_equal(a["L1/syn_p"], outputs.input_probes["p"][rec])
    np.testing.assert_array_equal(a["L1/syn_bp"], outputs.probes[0]["bp"][rec][:, [1]])
