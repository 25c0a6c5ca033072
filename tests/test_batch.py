"""The compiled batched network (``NetworkSpec.batch_size = 4``, dense, mode "exact") agrees with the batched oracle.

Four different samples (own inputs, labels and dropout masks) side by side through a dense 70-36-10 network,
learning at every step after burn-in on the batch-mean gradient, SGD and Adamax, against
:func:`decolle_brian.reference_batch.run_batch`: spikes identical, U within 1e-9, weights, biases and Adamax
state within 1e-6 relative, on the runtime device (generic synapses reading the shared weight by index) and on
C++ standalone (loops in generated code). One compiled network per optimiser (CI time).
"""

import copy

import numpy as np
import pytest
from samples import ListSamples, assert_batched_loop_is_oracle, assert_change_close, assert_stop_then_resume_is_exact

from decolle_brian import reference as ref
from decolle_brian.devices import Simulator
from decolle_brian.errors import SpecError
from decolle_brian.network.batch import from_units, pack_batch, to_units
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import ConvLayerSpec, DenseLayerSpec, LearningSpec, NetworkSpec
from decolle_brian.reference_batch import run_batch

# 70 inputs and 36 units: the C++ loops' register tiles (backends/conv_loops.py) run whole and partial: the kernel
# gradient 2 tiles of 32 input channels + 6, blocks of 4 (36) and 2 (10) output channels
B, T, BURNIN, N_IN, SIZES, N_CLASSES = 4, 80, 10, 70, (36, 10), 4
LABELS = [2, 0, 3, 2]
DEVICES = ["runtime", pytest.param("cpp_standalone", marks=pytest.mark.standalone)]


def make_spec(optimizer: str, batch_size: int = B) -> NetworkSpec:
    return NetworkSpec(
        n_inputs=N_IN, layers=tuple(DenseLayerSpec(n) for n in SIZES), n_classes=N_CLASSES, batch_size=batch_size,
        learning=LearningSpec(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 3e-3, dropout=0.5,
                              burnin=BURNIN),
    )


def make_params(spec, seed=1):
    params = init_params(spec, np.random.default_rng(seed))
    for index in range(1, len(spec.layers) + 1):
        params[f"layer{index}.W"] *= 3.0  # strong enough that every layer fires
    return params


def make_batch(seed=2):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.15, (B, T, N_IN)).astype(float)
    counts[rng.random((B, T, N_IN)) < 0.02] += 2  # some counts > 1
    return counts


def reference_layers(params):
    return [ref.DenseLayer(params[f"layer{k}.W"].copy(), params[f"layer{k}.b"].copy(), params[f"layer{k}.G"].copy(),
                           params[f"layer{k}.g"].copy()) for k in range(1, len(SIZES) + 1)]


@pytest.fixture(scope="module", params=DEVICES)
def device(request):
    return request.param


_BUILT: dict = {}  # (optimiser, threads) -> C++ Simulator: one compile each per session (CI time)


def build(spec, device, tmp_path_factory, threads=1):
    if device == "runtime":
        return Simulator(spec, T, device=device, probes=("u", "s"))
    key = (spec.learning.optimizer, threads)
    if key not in _BUILT:
        folder = tmp_path_factory.mktemp(f"batch_{spec.learning.optimizer}_{threads}t")
        _BUILT[key] = Simulator(spec, T, device=device, build_dir=folder, probes=("u", "s"), threads=threads)
    return _BUILT[key]


@pytest.mark.parametrize("optimizer", ["sgd", "adamax"])
def test_batch_of_four_agrees_with_batched_reference(optimizer, device, tmp_path_factory):
    spec = make_spec(optimizer)
    sim = build(spec, device, tmp_path_factory)
    params = make_params(spec)
    counts = make_batch()
    inputs = pack_batch([(counts[b], LABELS[b]) for b in range(B)], T, N_CLASSES, lr=spec.learning.lr,
                        burnin=BURNIN, learn=True, dropout=spec.learning.dropout, layer_sizes=list(SIZES),
                        rng=np.random.default_rng(5))
    out = sim.run_chunk(inputs, params)
    if device != "runtime":  # weights shared in generated loops: no forward synapse is created or stored
        code = sim.build_dir / "code_objects"
        assert not list(code.glob("forward*_synapses_create*.cpp"))
        def source(name):  # Brian numbers a code object's name (_2, ...) while another build of it is alive
            return next(code.glob(f"{name}_codeobject*.cpp")).read_text()

        assert "_c_out" in source("forward1_summed_variable_gw_pre")
        for name in ("y_syn_post", "bp_pre"):  # the readouts as rows within each sample (backends/dense_rows.py)
            assert "_n_row" in source(f"readout_synapses1_summed_variable_{name}")

    layers = reference_layers(params)
    masks = [from_units(m, B) for m in inputs.masks]
    assert not np.array_equal(masks[0][:, 0], masks[0][:, 1])  # dropout masks per sample
    expected = run_batch(layers, counts, LABELS, n_classes=N_CLASSES, burnin=BURNIN, learn=True, loss="smoothl1",
                         surrogate="fast_sigmoid", slope=10.0, optimizer=optimizer, lr=spec.learning.lr, masks=masks)
    for k in range(len(SIZES)):
        spikes = from_units(out.probes[k]["s"], B)
        assert 0.02 * spikes.size < spikes.sum() < 0.8 * spikes.size, f"layer {k + 1}: test would be weak"
        assert not np.array_equal(spikes[:, 0], spikes[:, 1])  # the samples really differ
        np.testing.assert_array_equal(spikes, expected["spikes"][k], err_msg=f"spikes of layer {k + 1}")
        np.testing.assert_allclose(from_units(out.probes[k]["u"], B), expected["u"][k], rtol=0, atol=1e-9,
                                   err_msg=f"U of layer {k + 1}")
        np.testing.assert_allclose(from_units(out.y[k], B), expected["y"][k], rtol=0, atol=1e-9,
                                   err_msg=f"readout of layer {k + 1}")
    for k, layer in enumerate(layers, start=1):
        for name, value in (("W", layer.W), ("b", layer.b)):
            new = out.params[f"layer{k}.{name}"]
            assert not np.allclose(new, params[f"layer{k}.{name}"]), f"layer{k}.{name} did not learn"
            np.testing.assert_allclose(new, value, rtol=1e-6, atol=1e-12, err_msg=f"layer{k}.{name}")
            assert_change_close(new, value, params[f"layer{k}.{name}"], f"layer{k}.{name}")
        for name in ("G", "g"):  # the fixed readout comes back as it went in
            np.testing.assert_array_equal(out.params[f"layer{k}.{name}"], params[f"layer{k}.{name}"])
        if optimizer == "adamax":
            for name in ("W", "b"):
                np.testing.assert_allclose(out.params[f"layer{k}.v_{name}"], expected["opt_state"][k - 1][name],
                                           rtol=1e-6, atol=1e-12, err_msg=f"layer{k}.v_{name}")


@pytest.mark.standalone
def test_two_threads_equal_one_thread(tmp_path_factory):
    """OpenMP: the batched loops split output channels between threads, every sum still one thread's in the same
    order, so a 2-thread binary gives the 1-thread one's results bit for bit (Adamax, learning after burn-in)."""
    spec = make_spec("adamax")
    params = make_params(spec)
    counts = make_batch()
    outs = []
    for threads in (1, 2):
        sim = build(spec, "cpp_standalone", tmp_path_factory, threads=threads)
        inputs = pack_batch([(counts[b], LABELS[b]) for b in range(B)], T, N_CLASSES, lr=spec.learning.lr,
                            burnin=BURNIN, learn=True, dropout=spec.learning.dropout, layer_sizes=list(SIZES),
                            rng=np.random.default_rng(5))
        outs.append(sim.run_chunk(inputs, params))
    one, two = outs
    assert not np.array_equal(one.params["layer1.W"], params["layer1.W"])  # it learned
    for name, value in one.params.items():
        np.testing.assert_array_equal(two.params[name], value, err_msg=name)
    for k in range(len(SIZES)):
        np.testing.assert_array_equal(two.probes[k]["u"], one.probes[k]["u"], err_msg=f"U of layer {k + 1}")
        np.testing.assert_array_equal(two.y[k], one.y[k], err_msg=f"readout of layer {k + 1}")


def test_unit_layout_round_trip():
    values = np.arange(2 * 3 * 5).reshape(2, 3, 5)  # (steps, B, n)
    units = to_units(values)
    assert units[1, 4 * 3 + 2] == values[1, 2, 4]  # unit j of sample b is j * B + b
    np.testing.assert_array_equal(from_units(units, 3), values)


def test_batch_mean_is_not_the_sum():
    """The oracle the network is held to differs from the same batch without the 1/B (the test can fail)."""
    spec = make_spec("sgd")
    params = make_params(spec)
    counts = make_batch()
    mean_layers, sum_layers = reference_layers(params), reference_layers(params)
    kw = dict(n_classes=N_CLASSES, burnin=T - 1, learn=True, slope=10.0, optimizer="sgd")
    run_batch(mean_layers, counts, LABELS, lr=spec.learning.lr, **kw)
    run_batch(sum_layers, counts, LABELS, lr=spec.learning.lr * B, **kw)  # SGD: B x the step of the mean
    start = reference_layers(params)
    change_mean = mean_layers[0].W - start[0].W
    assert np.abs(change_mean).max() > 0
    np.testing.assert_allclose(sum_layers[0].W - start[0].W, B * change_mean, rtol=1e-9, atol=1e-15)
    assert not np.allclose(copy.deepcopy(sum_layers[0].W), mean_layers[0].W, rtol=1e-6, atol=0)


def test_batch_spec_checks():
    assert make_spec("sgd", 1).structure_key() == NetworkSpec(
        n_inputs=N_IN, layers=tuple(DenseLayerSpec(n) for n in SIZES), n_classes=N_CLASSES,
        learning=make_spec("sgd").learning).structure_key()  # batch 1: the online network, same build
    assert make_spec("sgd", 4).structure_key() != make_spec("sgd", 1).structure_key()
    with pytest.raises(SpecError, match="network.batch_size: must be an integer >= 1"):
        make_spec("sgd", 0).validate()
    with pytest.raises(SpecError, match="in mode 'event' need learning.optimizer = 'sgd'"):  # tests/test_event_batch.py
        NetworkSpec(n_inputs=N_IN, layers=(DenseLayerSpec(5),), batch_size=2, mode="event",
                    neuron=make_spec("sgd").neuron, learning=make_spec("adamax").learning).validate()
    conv = ConvLayerSpec(channels=2, kernel=3, in_shape=(1, 4, 6))  # batched conv layers: tests/test_batch_conv.py
    with pytest.raises(SpecError, match="in mode 'event' are built for dense layers only"):
        NetworkSpec(n_inputs=24, input_shape=(1, 4, 6), layers=(conv,), batch_size=2, mode="event",
                    learning=make_spec("sgd").learning).validate()
    with pytest.raises(ValueError, match="one length"):
        pack_batch([(np.zeros((5, 3)), 0), (np.zeros((6, 3)), 1)], 10, 2, lr=0.1, burnin=0, learn=False,
                   dropout=0.0, layer_sizes=[2])


def test_training_loop_feeds_batches_runtime():
    """iter_chunks of a batched network: each batch of B samples in order is one run_batch of the oracle, a last
    partial batch is left out while learning, and evaluation in batches votes as the online oracle."""
    spec = make_spec("adamax")
    params = make_params(spec)
    rng = np.random.default_rng(7)
    n_samples = 2 * B + 1
    counts = rng.poisson(0.15, (n_samples, T, N_IN)).astype(float)
    labels = rng.integers(0, N_CLASSES, n_samples)
    order = rng.permutation(n_samples)
    assert_batched_loop_is_oracle(Simulator(spec, T, device="runtime"), params, counts, labels, order,
                                  reference_layers(params), burnin=BURNIN)


def test_stop_then_resume_in_batches_is_exact_runtime():
    """Stopped after the first batch of an epoch and resumed: the parameters equal the uninterrupted run's bit
    for bit (each batch's masks come from the run's generator, and the last partial batch is left out)."""
    spec = make_spec("sgd")
    loop = batch_loops(Simulator(spec, T, device="runtime"), spec)
    assert_stop_then_resume_is_exact(loop, B, 2 * 2 * B, make_params(spec)["layer1.W"])


def batch_loops(sim, spec):
    """``loop(state=None, generator=None, params=None)``: a fresh 2-epoch TrainingLoop of ``sim`` over 2 B + 1
    training samples (a last partial batch) and 3 test samples, fixed seeds (the defaults: a new run)."""
    from decolle_brian.loop import TrainingLoop, TrainingState  # noqa: PLC0415

    rng = np.random.default_rng(3)
    train = ListSamples(rng.poisson(0.15, (2 * B + 1, T, N_IN)).astype(float), rng.integers(0, N_CLASSES, 2 * B + 1))
    test = ListSamples(rng.poisson(0.15, (3, T, N_IN)).astype(float), [0, 1, 2])

    def loop(state=None, generator=None, params=None):
        return TrainingLoop(sim, train, test, params if params is not None else make_params(spec),
                            generator if generator is not None else np.random.default_rng(11),
                            state or TrainingState(), epochs=2, lr_schedule=lambda epoch: spec.learning.lr,
                            eval_every=2)

    return loop
