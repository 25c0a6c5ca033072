"""Configuration files: every shipped config loads; conv layers from TOML; overrides; clear errors."""

from pathlib import Path

import pytest

from decolle_brian.config import ConfigError, apply_override, load_config, network_spec, resolve

RUNS = Path(__file__).resolve().parent.parent / "runs"


@pytest.mark.parametrize("path", sorted(RUNS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config["name"] == path.stem


def test_dvsgesture_config_is_the_paper_network():
    config = load_config(RUNS / "dvsgesture.toml")
    spec = network_spec(config, 2 * 32 * 32, 11, (2, 32, 32))
    assert [(layer.channels, layer.kernel, layer.pool) for layer in spec.layers] == [(64, 7, 2), (128, 7, 1),
                                                                                    (128, 7, 2)]
    assert [layer.out_shape for layer in spec.layers] == [(64, 16, 16), (128, 16, 16), (128, 8, 8)]
    assert spec.learning.burnin == 100 and spec.n_classes == 11


@pytest.mark.data
def test_nmnist_conv_config_runs_on_the_shared_recordings(shared_data):
    """runs/nmnist_conv.toml as the CLI opens it, on the real N-MNIST of ../shared/data: the 1,000 training and
    100 test recordings, 2x32x32 input (34x34 centre-cropped), 300 steps, the reference's conv network; nothing
    is compiled (``check=()``: the recordings themselves are read by tests/test_data_nmnist.py)."""
    from decolle_brian.experiment import Experiment  # noqa: PLC0415 - imports the data sets

    experiment = Experiment.from_config(load_config(RUNS / "nmnist_conv.toml"), str(shared_data), check=())
    assert (len(experiment.train_set), len(experiment.test_set)) == (1000, 100)
    assert experiment.train_set.input_shape == (2, 32, 32) and experiment.train_set.n_steps == 300
    spec = experiment.spec.validate()
    assert [(layer.channels, layer.kernel, layer.pool) for layer in spec.layers] == [(64, 7, 2), (128, 7, 1),
                                                                                    (128, 7, 2)]
    assert spec.n_classes == 10 and spec.learning.burnin == 60 and spec.learning.optimizer == "adamax"
    assert experiment.chunk_steps == 4 * 300  # training.chunk_samples recordings per run of the network


@pytest.mark.data
def test_nmnist_conv_small_config_runs_on_the_shared_recordings(shared_data):
    """runs/nmnist_conv_small.toml (the CPU-sized conv network) as the CLI opens it on the real N-MNIST: the
    reference's geometry with a quarter of its channels, batches of 72 in mode exact, one run per batch."""
    from decolle_brian.experiment import Experiment  # noqa: PLC0415 - imports the data sets

    experiment = Experiment.from_config(load_config(RUNS / "nmnist_conv_small.toml"), str(shared_data), check=())
    assert (len(experiment.train_set), len(experiment.test_set)) == (1000, 100)
    spec = experiment.spec.validate()
    assert [(layer.channels, layer.kernel, layer.padding, layer.pool) for layer in spec.layers] == [
        (16, 7, 3, 2), (32, 7, 3, 1), (32, 7, 3, 2)]
    assert [layer.out_shape for layer in spec.layers] == [(16, 16, 16), (32, 16, 16), (32, 8, 8)]
    assert (spec.batch_size, spec.mode, spec.learning.optimizer, spec.learning.lr) == (72, "exact", "adamax", 1e-3)
    assert experiment.chunk_steps == 300  # a batch is one run of T steps


def test_conv_after_dense_is_refused():
    config = resolve({"network": {"layers": [32, {"kind": "conv", "channels": 4, "kernel": 3}]}})
    with pytest.raises(ConfigError, match=r"network.layers\[1\].*image-shaped"):
        network_spec(config, 64, 10, (1, 8, 8))


@pytest.mark.parametrize("layer, match", [
    ({"kind": "conv", "channels": 4}, "channels and kernel required"),
    ({"kind": "conv", "channels": 4, "kernel": 3, "stride": 2}, "a conv layer takes"),
    ({"kind": "pool"}, "unknown layer kind"),
    ({"kind": "dense", "n": 8, "bias": False}, "unknown key"),
    ({"kind": "conv", "channels": 0, "kernel": 3}, "channels"),
])
def test_bad_layer_tables(layer, match):
    config = resolve({"network": {"layers": [layer]}})
    with pytest.raises(ConfigError, match=match):
        network_spec(config, 64, 10, (1, 8, 8))


def test_override_parsing():
    raw = {}
    apply_override(raw, "learning.lr=3e-4")
    apply_override(raw, "network.layers=[64, 32]")
    apply_override(raw, "data.dataset=mnist")
    assert raw == {"learning": {"lr": 3e-4}, "network": {"layers": [64, 32]}, "data": {"dataset": "mnist"}}
    with pytest.raises(ConfigError, match="key=value"):
        apply_override(raw, "learning.lr")


def test_bool_is_not_a_number():
    with pytest.raises(ConfigError, match="learning.lr: expected integer or number, got the boolean"):
        resolve({"learning": {"lr": True}})


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/x.toml")
