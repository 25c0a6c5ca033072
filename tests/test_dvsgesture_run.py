"""DvsGesture end to end: ``runs/dvsgesture.toml`` trained through the CLI on recordings in the IBM format.

The real data set cannot be shipped. Three tiny recordings are written here byte by byte in its format (AEDAT 3.1
polarity packets with a special-event packet between them, the IBM header lines, a ``_labels.csv`` per
recording; users 1 and 2 are training users, user 24 a test user), and the shipped configuration is trained on
them with ``decolle-brian train`` exactly as on the real folder, shrunk by ``--set`` overrides only: the paper's
three conv layers (7 x 7, padding 3, pools 2, 1, 2) with 4-8-8 channels instead of 64-128-128, the sensor
summed 8 x 8 (16 x 16 input) instead of 4 x 4, 20-step windows, burn-in 5, 2 epochs. Its Adamax, lr, dropout,
lc_ampl and neuron constants stay the shipped ones. Then ``decolle-brian eval`` and ``decolle-brian plot``
work on the run folder.

The runtime device (numpy) runs it: nothing is compiled (cost: a few seconds of CPU, stated in
docs/conv.md).
"""

import json

import numpy as np
import pytest
from conftest import PROJECT_ROOT
from test_data_dvsgesture import make_recording, special_packet

from decolle_brian.cli import main
from decolle_brian.config import load_config, network_spec
from decolle_brian.network.params import init_params
from decolle_brian.store import CHECKPOINT, read_checkpoint, read_metrics

CONFIG = PROJECT_ROOT / "runs" / "dvsgesture.toml"
#: (channels, pool) of the paper's three conv layers (64-128-128): as few channels as keep every layer firing
LAYERS = [(4, 2), (8, 1), (8, 2)]
SHRINK = [
    "network.layers=[" + ", ".join(f'{{kind = "conv", channels = {c}, kernel = 7, padding = 3, pool = {p}}}'
                                   for c, p in LAYERS) + "]",
    "data.params.downsample=8",
    "data.params.n_steps=20",
    "learning.burnin=5",
    "training.epochs=2",
    "training.chunk_samples=8",
    "training.progress=false",
    'device.name="runtime"',
    'device.runtime_target="numpy"',
]
#: the gestures' classes as the labels csv writes them (1..11); the blob of each class sits in its own place
CENTRE = {2: (32, 32), 7: (96, 96), 11: (32, 96)}
RECORDINGS = {"user01_fluorescent": [2, 7, 11, 7], "user02_led": [11, 2, 7, 2], "user24_lab": [7, 11, 2]}
GESTURE_US, GAP_US = 60_000, 20_000


def write_recordings(root):
    """Gestures of moving-noise blobs (Poisson events, ON and OFF), each in its labelled time window."""
    rng = np.random.default_rng(0)
    for name, classes in RECORDINGS.items():
        events, rows, start = [], [], 5_000
        for cls in classes:
            n = rng.poisson(20e3 * GESTURE_US * 1e-6)  # 20 k events/s
            cx, cy = CENTRE[cls]
            x = np.clip(np.rint(rng.normal(cx, 8, n)), 0, 127).astype(int)
            y = np.clip(np.rint(rng.normal(cy, 8, n)), 0, 127).astype(int)
            t = np.sort(rng.integers(start, start + GESTURE_US, n))
            events += list(zip(x.tolist(), y.tolist(), rng.integers(0, 2, n).tolist(), t.tolist(), strict=True))
            rows.append((cls, start, start + GESTURE_US))
            start += GESTURE_US + GAP_US
        make_recording(root, name, events, rows, [special_packet()])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The shrunk shipped configuration trained by the CLI: (data root, run folder)."""
    base = tmp_path_factory.mktemp("dvsgesture")
    root = base / "data"
    write_recordings(root / "DvsGesture")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DECOLLE_CACHE", str(base / "cache"))
        args = ["train", str(CONFIG), "--data", str(root), "--out", str(base / "out")]
        assert main(args + [arg for value in SHRINK for arg in ("--set", value)]) == 0
    (run_dir,) = (base / "out" / "dvsgesture").iterdir()
    return root, run_dir


def _label_counts(names):
    counts = np.zeros(11, dtype=int)
    for name in names:
        for cls in RECORDINGS[name]:
            counts[cls - 1] += 1
    return counts


def test_run_folder_of_the_shipped_config(trained):
    _, run_dir = trained
    for name in ("config.toml", "meta.json", "metrics.csv", "summary.json", CHECKPOINT):
        assert (run_dir / name).is_file(), name
    config = load_config(run_dir / "config.toml")
    shipped = load_config(CONFIG)
    assert config["learning"] == {**shipped["learning"], "burnin": 5}  # the shipped rule, only burn-in shrunk
    assert config["neuron"] == shipped["neuron"] and config["data"]["dataset"] == "dvsgesture"
    rows = read_metrics(run_dir)
    # eval_every = 10 (shipped): the test split is evaluated once, after the last epoch
    assert [(r["epoch"], r["split"]) for r in rows] == [(1, "train"), (2, "train"), (2, "test")]
    assert [r["samples_seen"] for r in rows] == [8, 16, 16]
    assert all(np.isfinite(r[f"loss_L{k}"]) for r in rows for k in (1, 2, 3))


def test_labels_reach_the_run(trained):
    """The labels csv's classes (1..11) are the run's classes 0..10, for the training and the test users."""
    _, run_dir = trained
    summary = json.loads((run_dir / "summary.json").read_text())
    expected_test = _label_counts(["user24_lab"])
    for confusion in summary["confusion"]:  # per layer: rows are the true classes
        np.testing.assert_array_equal(np.sum(confusion, axis=1), expected_test)
    described = json.loads((run_dir / "meta.json").read_text())["dataset"]
    expected_train = _label_counts(["user01_fluorescent", "user02_led"])
    found = [int(line.split()[-1]) for line in described.splitlines() if line[:4].strip().isdigit()]
    np.testing.assert_array_equal(found, expected_train)
    assert "(2, 16, 16) per step, T = 20 steps" in described


def test_every_layer_learned(trained):
    """Every kernel and bias moved away from its initial value (drawn from the run seed), the fixed readouts did
    not, every layer fires, and every layer's local loss fell from the first epoch to the second."""
    _, run_dir = trained
    config = load_config(run_dir / "config.toml")
    meta = json.loads((run_dir / "meta.json").read_text())
    spec = network_spec(config, 2 * 16 * 16, 11, (2, 16, 16))
    assert spec.structure_key() == meta["structure_key"]
    initial = init_params(spec, np.random.default_rng(config["seed"]))
    params, state = read_checkpoint(run_dir, structure_key=spec.structure_key())
    assert state["epoch"] == 2
    in_channels = 2
    for k, (channels, _) in enumerate(LAYERS, start=1):
        assert params[f"layer{k}.K"].shape == (channels, in_channels, 7, 7)
        in_channels = channels
        for name in ("K", "b"):
            assert not np.allclose(params[f"layer{k}.{name}"], initial[f"layer{k}.{name}"]), f"layer{k}.{name}"
            assert np.any(params[f"layer{k}.v_{name}"] > 0)  # Adamax state
        np.testing.assert_array_equal(params[f"layer{k}.G"], initial[f"layer{k}.G"])  # fixed random readout
    first, second, test = read_metrics(run_dir)
    for k in range(1, len(LAYERS) + 1):
        assert test[f"rate_hz_L{k}"] > 0, f"layer {k} silent: its checks would be empty"
        assert second[f"loss_L{k}"] < first[f"loss_L{k}"], (k, first, second)


def test_eval_and_plot_of_the_run(trained, tmp_path, monkeypatch):
    root, run_dir = trained
    monkeypatch.setenv("DECOLLE_CACHE", str(tmp_path / "cache"))  # a fresh cache: the recordings are read again
    assert main(["eval", str(run_dir), "--data", str(root)]) == 0
    evaluated = json.loads((run_dir / "eval_test.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    # the stored checkpoint evaluated again gives the run's final evaluation
    assert evaluated["n_samples"] == 3 and evaluated["confusion"] == summary["confusion"]
    np.testing.assert_allclose(evaluated["loss"], summary["test_loss"], rtol=1e-12)
    assert main(["plot", str(run_dir)]) == 0
    assert sorted((run_dir / "figures").glob("*.png"))
