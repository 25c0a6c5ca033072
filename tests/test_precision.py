"""``network.precision = "float32"``: the batched network of tests/test_batch.py compiled in single precision on C++
standalone, against the batched NumPy oracle run in float32 (``run_batch(..., dtype=np.float32)``).

Four samples side by side (dense 70-36-10, dropout, learning after burn-in on the batch-mean gradient, SGD and
Adamax): spikes identical over the run, U and the readout within rtol 1e-4 / atol 1e-5, weights and biases within
rtol 1e-4 / atol 1e-5 and their change within 1e-3 of the largest change, the Adamax state within rtol 1e-3 / atol
1e-6. Measured (2026-12-06): max |U - oracle| 8.0-8.2e-6 (Adamax, two builds) / 7.2e-7 (SGD), max |W - oracle|
1.8e-6 / 6.0e-8 (1e-5 / 1.6e-5 of the largest change), max |v - oracle| 7.5e-7 (1.2-1.3e-4 relative): two float32
computations in different orders of operations, not two float64 ones (tests/test_batch.py: 1e-9). The generated
loops really are float ones, the build has a folder of its own, a checkpoint keeps the float32 bits and a run
stopped and resumed from it equals the whole run; bad values and devices without float32 are refused naming the
key.
"""

import dataclasses

import numpy as np
import pytest
from samples import assert_change_close
from test_batch import BURNIN, LABELS, N_CLASSES, SIZES, B, T, batch_loops, make_batch, make_params, make_spec

from decolle_brian import reference as ref
from decolle_brian.config import network_spec, resolve
from decolle_brian.devices import Simulator
from decolle_brian.errors import ConfigError, DeviceError, SpecError
from decolle_brian.network.batch import from_units, pack_batch
from decolle_brian.network.spec import ConvLayerSpec, LearningSpec
from decolle_brian.reference_batch import run_batch
from decolle_brian.store import read_checkpoint, write_checkpoint

_BUILT: dict = {}  # optimiser -> float32 C++ Simulator: one compile each per session


def float32_spec(optimizer: str):
    return dataclasses.replace(make_spec(optimizer), precision="float32")


def build(optimizer: str, tmp_path_factory) -> Simulator:
    if optimizer not in _BUILT:
        folder = tmp_path_factory.mktemp(f"float32_{optimizer}")
        _BUILT[optimizer] = Simulator(float32_spec(optimizer), T, device="cpp_standalone", build_dir=folder,
                                      probes=("u", "s"))
    return _BUILT[optimizer]


def float32_layers(params):
    return [ref.DenseLayer(*(params[f"layer{k}.{name}"].astype(np.float32) for name in ("W", "b", "G", "g")))
            for k in range(1, len(SIZES) + 1)]


def batch_inputs(spec, counts):
    return pack_batch([(counts[b], LABELS[b]) for b in range(B)], T, N_CLASSES, lr=spec.learning.lr, burnin=BURNIN,
                      learn=True, dropout=spec.learning.dropout, layer_sizes=list(SIZES), rng=np.random.default_rng(5))


def maincode(path) -> str:
    """A generated code object's function body (from its first array pointer; Brian's helpers before it name double)."""
    text = path.read_text()
    return text[text.index("_ptr_array_"):]


@pytest.mark.standalone
@pytest.mark.parametrize("optimizer", ["sgd", "adamax"])
def test_float32_batch_agrees_with_float32_oracle(optimizer, tmp_path_factory):
    spec = float32_spec(optimizer)
    sim = build(optimizer, tmp_path_factory)
    params = make_params(spec)  # float64: the network stores them as float32
    counts = make_batch()
    inputs = batch_inputs(spec, counts)
    out = sim.run_chunk(inputs, params)

    # the heavy loops in float: the forward sum, the kernel gradient, the optimiser step (and no double there)
    code = sim.build_dir / "code_objects"
    forward = maincode(next(code.glob("forward1_summed_variable_u_syn_post_codeobject*.cpp")))
    gradient = maincode(next(code.glob("forward1_summed_variable_gw_pre_codeobject*.cpp")))
    step = maincode(next(code.glob("layer1_kernel_learn_codeobject*.cpp")))
    assert "static float _in_pad0[" in forward and "float _acc[" in forward
    assert "static float _in_t0[" in gradient and "float _acc[" in gradient
    assert "float w = " in step
    for text in (forward, gradient, step):
        assert "double" not in text
    if optimizer == "adamax":  # its compiled-in constants too (a double would make the step double)
        assert "const float eps" in next(code.glob("layer1_kernel_learn_codeobject*.cpp")).read_text()

    for key, value in out.params.items():
        assert value.dtype == np.float32, key
    layers = float32_layers(params)
    masks = [from_units(m, B) for m in inputs.masks]
    expected = run_batch(layers, counts, LABELS, n_classes=N_CLASSES, burnin=BURNIN, learn=True, loss="smoothl1",
                         surrogate="fast_sigmoid", slope=10.0, optimizer=optimizer, lr=spec.learning.lr, masks=masks,
                         dtype=np.float32)
    for k in range(len(SIZES)):
        spikes = from_units(out.probes[k]["s"], B)
        assert 0.02 * spikes.size < spikes.sum() < 0.8 * spikes.size, f"layer {k + 1}: test would be weak"
        assert not np.array_equal(spikes[:, 0], spikes[:, 1])  # the samples really differ
        # U comes within 4.2e-6 of the threshold here (SGD, layer 1), below the Adamax U deviation (8e-6): a compiler
        # rounding otherwise could flip a spike there, so a mismatch names the oracle's U where it happens
        assert spikes.shape == expected["spikes"][k].shape, f"layer {k + 1}"
        differ = spikes != expected["spikes"][k]
        assert not differ.any(), (f"spikes of layer {k + 1} differ at {differ.sum()} places; the oracle's U there: "
                                  f"{expected['u'][k][differ][:5]} (threshold 0)")
        np.testing.assert_allclose(from_units(out.probes[k]["u"], B), expected["u"][k], rtol=1e-4, atol=1e-5,
                                   err_msg=f"U of layer {k + 1}")
        np.testing.assert_allclose(from_units(out.y[k], B), expected["y"][k], rtol=1e-4, atol=1e-5,
                                   err_msg=f"readout of layer {k + 1}")
    for k, layer in enumerate(layers, start=1):
        for name, value in (("W", layer.W), ("b", layer.b)):
            new, initial = out.params[f"layer{k}.{name}"], params[f"layer{k}.{name}"].astype(np.float32)
            assert not np.allclose(new, initial), f"layer{k}.{name} did not learn"
            np.testing.assert_allclose(new, value, rtol=1e-4, atol=1e-5, err_msg=f"layer{k}.{name}")
            assert_change_close(new, value, initial, f"layer{k}.{name}", rtol=1e-3)
        for name in ("G", "g"):  # the fixed readout comes back as it went in, rounded to float32
            np.testing.assert_array_equal(out.params[f"layer{k}.{name}"],
                                          params[f"layer{k}.{name}"].astype(np.float32))
        if optimizer == "adamax":
            for name in ("W", "b"):
                np.testing.assert_allclose(out.params[f"layer{k}.v_{name}"], expected["opt_state"][k - 1][name],
                                           rtol=1e-3, atol=1e-6, err_msg=f"layer{k}.v_{name}")


@pytest.mark.standalone
def test_float32_stop_then_resume_from_checkpoint_is_exact(tmp_path_factory, tmp_path):
    """Stopped after the first batch, checkpointed (h5py), read back and resumed: the float32 parameters keep their
    type and bits, and the resumed run's parameters equal the uninterrupted run's bit for bit."""
    from decolle_brian.loop import Interrupted  # noqa: PLC0415

    spec = float32_spec("adamax")
    loop = batch_loops(build("adamax", tmp_path_factory), spec)

    whole = loop()
    whole.run()
    stopped = loop()
    with pytest.raises(Interrupted):
        stopped.run(stop_after_samples=B)
    assert any(value.dtype == np.float32 for value in stopped.params.values())
    write_checkpoint(tmp_path, stopped.params, {"structure_key": spec.structure_key()})
    params, _ = read_checkpoint(tmp_path, structure_key=spec.structure_key())
    for key, value in stopped.params.items():
        assert params[key].dtype == np.asarray(value).dtype, key
        np.testing.assert_array_equal(params[key], value, err_msg=key)
    resumed = loop(stopped.state, stopped.rng, params)
    resumed.run()
    for key, value in whole.params.items():
        assert value.dtype == np.float32, key
        np.testing.assert_array_equal(resumed.params[key], value, err_msg=key)
    assert not np.array_equal(whole.params["layer1.W"], make_params(spec)["layer1.W"].astype(np.float32))


def test_precision_is_part_of_the_structure_key():
    spec = make_spec("adamax")
    assert spec.precision == "float64"
    assert dataclasses.replace(spec, precision="float32").structure_key() != spec.structure_key()
    # float64 builds keep their names: the key of the default spec does not name a precision
    assert dataclasses.replace(spec, precision="float64").structure_key() == spec.structure_key()


def test_bad_precision_is_refused_naming_the_key():
    with pytest.raises(SpecError, match=r"network\.precision: unknown precision 'float16'.*float32"):
        dataclasses.replace(make_spec("sgd"), precision="float16").validate()
    with pytest.raises(ConfigError, match=r"network\.precision"):
        resolve({"network": {"precision": "double"}})
    # a device that does not build float32: refused by the configuration and by the Simulator, naming the fix
    with pytest.raises(ConfigError, match=r"network\.precision = 'float32' is not built on device\.name = 'runtime'"):
        resolve({"network": {"precision": "float32"}, "device": {"name": "runtime"}})
    with pytest.raises(ConfigError, match=r"network\.precision = 'float32' is not built on device\.name = "
                                          r"'cuda_standalone'.*network\.precision = 'float64'"):
        resolve({"network": {"precision": "float32"}, "device": {"name": "cuda_standalone"}})
    with pytest.raises(DeviceError, match=r"network\.precision = 'float32' is not built on the runtime device"):
        Simulator(float32_spec("sgd"), T, device="runtime")


@pytest.mark.parametrize("change, what", [
    ({"batch_size": 1}, "batch_size 1"),
    ({"mode": "event", "learning": LearningSpec(optimizer="sgd", lr=0.05, dropout=0.5)}, "mode 'event'"),
    ({"n_inputs": 72, "input_shape": (2, 6, 6),
      "layers": (ConvLayerSpec(channels=3, kernel=3, in_shape=(2, 6, 6), padding=1, pool=2),)}, "conv layers"),
], ids=["batch-1", "event", "conv"])
def test_float32_untested_combinations_are_refused(change, what):
    # float32 is built where it is checked against the float32 oracle (batched dense, mode exact) and refused
    # elsewhere, naming the key, what this network is, and the fix
    spec = dataclasses.replace(float32_spec("sgd"), **change)
    with pytest.raises(SpecError, match=rf"network\.precision: 'float32' is built for batched dense networks in mode "
                                        rf"'exact' only.*{what}.*network\.precision = 'float64'"):
        spec.validate()


def test_config_precision_reaches_the_spec_and_float64_is_not_written():
    config = resolve({"network": {"precision": "float32", "mode": "exact"}, "training": {"batch_size": 4}})
    assert config["network"]["precision"] == "float32"
    assert network_spec(config, 4, 2, check_rule=False).precision == "float32"
    default = resolve({})
    assert "precision" not in default["network"]  # a resolved configuration stays as before the key
    assert network_spec(default, 4, 2, check_rule=False).precision == "float64"
