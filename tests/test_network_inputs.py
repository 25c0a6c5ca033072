"""Network-level guards: bad specs fail before building; wrong inputs raise instead of being ignored;
the equations ship inside a plain (non-editable) install."""

import dataclasses
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from decolle_brian.devices import DeviceError, Simulator
from decolle_brian.network.chunks import pack_chunk, plan_chunks
from decolle_brian.network.params import check_params, init_params
from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec, NeuronParams, SpecError

SPEC = NetworkSpec(n_inputs=6, layers=(DenseLayerSpec(5),), n_classes=3,
                   learning=LearningSpec(optimizer="sgd", dropout=0.0))


@pytest.mark.parametrize("spec, field", [
    (NetworkSpec(n_inputs=6, layers=()), "network.layers"),
    (NetworkSpec(n_inputs=6, layers=(DenseLayerSpec(0),)), "network.layers[0].n"),
    (NetworkSpec(n_inputs=6, layers=(DenseLayerSpec(4),), neuron=NeuronParams(alpha=float("nan"))), "neuron.alpha"),
    (NetworkSpec(n_inputs=6, layers=(DenseLayerSpec(4),), neuron=NeuronParams(beta=1.0)), "neuron.beta"),
    (NetworkSpec(n_inputs=6, layers=(DenseLayerSpec(4),), learning=LearningSpec(optimizer="adam")),
     "learning.optimizer"),
    (NetworkSpec(n_inputs=6, layers=(DenseLayerSpec(4),), learning=LearningSpec(dropout=1.0)), "learning.dropout"),
    (NetworkSpec(n_inputs=6, layers=(DenseLayerSpec(4),), n_classes=1), "network.n_classes"),
])
def test_bad_spec_fails_before_building(spec, field):
    with pytest.raises(SpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Simulator(spec, 10, device="cpp_standalone")


def test_negative_time_constant_is_named():
    with pytest.raises(SpecError, match="neuron.tau_mem"):
        NeuronParams.from_taus(-5.0, 5.0, 2.0)


def test_unknown_device():
    with pytest.raises(DeviceError, match="Unknown device"):
        Simulator(SPEC, 10, device="fpga")


@pytest.fixture(scope="module")
def runtime_sim():
    return Simulator(SPEC, 12, device="runtime")


def _inputs(steps=12, n_inputs=6):
    rng = np.random.default_rng(0)
    return pack_chunk([(rng.poisson(0.5, (steps, n_inputs)).astype(float), 1)], steps, 3, lr=0.1, burnin=0,
                      learn=True, dropout=0.0, layer_sizes=[5])[0]


def test_wrong_sized_input_raises(runtime_sim):
    params = init_params(SPEC, np.random.default_rng(0))
    inputs = _inputs()
    inputs.counts = np.zeros((12, 7))
    with pytest.raises(ValueError, match="counts_in.*shape"):
        runtime_sim.run_chunk(inputs, params)


def test_nan_input_and_params_raise(runtime_sim):
    params = init_params(SPEC, np.random.default_rng(0))
    inputs = _inputs()
    inputs.counts = np.asarray(inputs.counts)  # dense counts given by a user
    inputs.counts[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        runtime_sim.run_chunk(inputs, params)
    sample = np.random.default_rng(0).poisson(0.5, (12, 6)).astype(float)
    sample[3, 2] = np.nan  # in a sample: pack_chunk keeps it among the events
    inputs = pack_chunk([(sample, 1)], 12, 3, lr=0.1, burnin=0, learn=True, dropout=0.0, layer_sizes=[5])[0]
    with pytest.raises(ValueError, match="NaN"):
        runtime_sim.run_chunk(inputs, params)
    params["layer1.W"][0, 0] = np.nan
    with pytest.raises(ValueError, match="layer1.W"):
        check_params(SPEC, params)


def test_wrong_param_shape_raises(runtime_sim):
    params = init_params(SPEC, np.random.default_rng(0))
    params["layer1.W"] = params["layer1.W"][:, :5]
    with pytest.raises(ValueError, match="layer1.W.*shape"):
        runtime_sim.run_chunk(_inputs(), params)


def test_masks_refused_without_dropout(runtime_sim):
    params = init_params(SPEC, np.random.default_rng(0))
    inputs = _inputs()
    inputs.masks = [np.zeros((12, 5))]
    with pytest.raises(ValueError, match="without dropout"):
        runtime_sim.run_chunk(inputs, params)


def test_chunk_planning():
    assert plan_chunks([3, 3, 3, 2], 6) == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="more than the chunk length"):
        plan_chunks([7], 6)


def test_wheel_ships_the_equations(tmp_path):
    """A plain (non-editable) install finds equations/: they are in the wheel as decolle_brian/equations."""
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), "."], capture_output=True, text=True, cwd=_root())
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("decolle_brian-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for model in ("lif", "trace", "readout", "forward", "readout_synapse"):
        assert f"decolle_brian/equations/{model}.eq" in names


def _root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


def test_every_mode_and_layer_kind_has_a_builder():
    """The registries the builder looks up (no mode branches): every mode a spec accepts, every layer kind it
    accepts in that mode, and a clear error for a pair that has none."""
    from decolle_brian.derivation import MODES  # noqa: PLC0415
    from decolle_brian.network import catalog  # noqa: PLC0415, F401 - every builder and mode registers
    from decolle_brian.network.registry import layer_builder_for, network_mode_for  # noqa: PLC0415

    assert {network_mode_for(mode).name for mode in MODES} == set(MODES)
    from decolle_brian.network.batch import BATCHED_DENSE  # noqa: PLC0415

    for mode, kind in (("exact", "dense"), ("exact", "conv"), ("exact", BATCHED_DENSE), ("event", "dense"),
                       ("event", "conv"), ("event", BATCHED_DENSE)):
        assert layer_builder_for(mode, kind) is not None
    with pytest.raises(ValueError, match=r"'event' has no builder for layers of kind 'pool'; "
                                         r"it builds \['conv', 'dense', 'dense \(batched\)'\]"):
        layer_builder_for("event", "pool")
    with pytest.raises(ValueError, match="Unknown network mode 'lazy'"):
        network_mode_for("lazy")


def test_devices_are_backends_chosen_by_name():
    from decolle_brian.backends import DEVICES, backend_class  # noqa: PLC0415

    assert set(DEVICES) == {"runtime", "cpp_standalone", "cuda_standalone"}
    # as brian2cuda's device subclasses Brian's C++ standalone device
    assert issubclass(backend_class("cuda_standalone"), backend_class("cpp_standalone"))
    with pytest.raises(DeviceError, match="Unknown device 'fpga'"):
        backend_class("fpga")


def test_a_registry_refuses_a_second_class_for_one_key():
    from decolle_brian.registries import registrar  # noqa: PLC0415

    table = {}
    register = registrar(table, "widget", attribute="name")

    @register("a")
    class A:
        pass

    assert table == {"a": A} and A.name == "a"
    with pytest.raises(ValueError, match="A widget 'a' is registered already"):
        register("a")(type("B", (), {}))
    pair = registrar(table, "pair")
    pair("x", "y")(A)
    assert table[("x", "y")] is A


def test_inputs_prepared_ahead_run_as_given_and_only_on_their_simulator(runtime_sim):
    """prepare_inputs then run_chunk gives what run_chunk on the raw inputs gives; inputs prepared by another
    Simulator or for other neuron parameters are refused, naming the fix."""
    params = init_params(SPEC, np.random.default_rng(0))
    direct = runtime_sim.run_chunk(_inputs(), params)
    ahead = runtime_sim.run_chunk(runtime_sim.prepare_inputs(_inputs()), params)
    for key in direct.params:
        np.testing.assert_array_equal(ahead.params[key], direct.params[key])
    np.testing.assert_array_equal(ahead.y[0], direct.y[0])
    prepared = runtime_sim.prepare_inputs(_inputs())
    with pytest.raises(ValueError, match="prepare them with this Simulator's prepare_inputs"):
        runtime_sim.run_chunk(dataclasses.replace(prepared, simulator=object()), params)
    with pytest.raises(ValueError, match="other neuron parameters"):
        runtime_sim.run_chunk(prepared, params, dataclasses.replace(SPEC.neuron, alpha=0.5))
    with pytest.raises(ValueError, match="NaN"):  # bad inputs are refused when prepared
        bad = _inputs()
        bad.targets[0, 0] = np.nan
        runtime_sim.prepare_inputs(bad)
