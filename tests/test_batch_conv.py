"""Batched conv layers (``NetworkSpec.batch_size = 3``, mode "exact") agree with the batched oracle.

Three different samples (own inputs with counts > 1, labels and dropout masks) side by side through a
conv -> conv -> dense network (2x8x8 input; 3 channels 3x3 padding 1, pool 2; 4 channels 3x3 padding 1, no
pool; dense 10), learning at every step after burn-in on the batch-mean gradient, SGD and Adamax, against
:func:`decolle_brian.reference_batch.run_batch`: pooled and full-resolution spikes identical, U and readouts
within 1e-9, kernels, weights, biases and Adamax state within 1e-6 relative, on the runtime device (one
synapse per tap, position and sample reading the shared kernel) and on C++ standalone (the batched conv loops
of generated code). One compiled network per (device, optimiser), shared by the tests (CI time).
"""

import math

import numpy as np
import pytest
from samples import ListSamples, assert_batched_loop_is_oracle, assert_change_close, assert_stop_then_resume_is_exact

from decolle_brian import reference as ref
from decolle_brian.devices import Simulator
from decolle_brian.errors import SpecError
from decolle_brian.network.batch import from_units, pack_batch
from decolle_brian.network.conv import MAX_SYNAPSES, conv_connectivity, full_probes
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import ConvLayerSpec, DenseLayerSpec, LearningSpec, NetworkSpec
from decolle_brian.reference_batch import run_batch

B, T, BURNIN, N_CLASSES = 3, 60, 10, 4
LABELS = [2, 0, 3]
INPUT_SHAPE = (2, 8, 8)
L1 = ConvLayerSpec(channels=3, kernel=3, in_shape=INPUT_SHAPE, padding=1, pool=2)
L2 = ConvLayerSpec(channels=4, kernel=3, in_shape=L1.out_shape, padding=1, pool=1)
L3 = DenseLayerSpec(10)
#: (device, optimiser) of the compiled networks; C++ standalone carries the standalone mark
CASES = [pytest.param((device, optimizer), id=f"{device}-{optimizer}", marks=marks)
         for device, marks in (("runtime", ()), ("cpp_standalone", pytest.mark.standalone))
         for optimizer in ("sgd", "adamax")]


def make_spec(optimizer: str, batch_size: int = B, layers=(L1, L2, L3), mode: str = "exact") -> NetworkSpec:
    return NetworkSpec(
        n_inputs=math.prod(INPUT_SHAPE), input_shape=INPUT_SHAPE, layers=tuple(layers), n_classes=N_CLASSES,
        batch_size=batch_size, mode=mode,
        learning=LearningSpec(optimizer=optimizer, lr=0.02 if optimizer == "sgd" else 3e-3, dropout=0.5,
                              burnin=BURNIN),
    )


def make_params(spec, seed=1):
    params = init_params(spec, np.random.default_rng(seed))
    for index, layer in enumerate(spec.layers, start=1):
        params[f"layer{index}.{'K' if layer.kind == 'conv' else 'W'}"] *= 3.0  # strong enough that every layer fires
    return params


def make_batch(n_samples=B, seed=2):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.15, (n_samples, T, math.prod(INPUT_SHAPE))).astype(float)
    counts[rng.random(counts.shape) < 0.02] += 2  # some counts > 1 (several events in one bin)
    assert counts.max() > 1
    return counts


def reference_layers(spec, params):
    layers = []
    for k, layer in enumerate(spec.layers, start=1):
        p = {name: params[f"layer{k}.{name}"].copy() for name in ("b", "G", "g")}
        if layer.kind == "conv":
            layers.append(ref.ConvLayer(params[f"layer{k}.K"].copy(), p["b"], p["G"], p["g"], layer.padding,
                                        layer.pool, layer.in_shape))
        else:
            layers.append(ref.DenseLayer(params[f"layer{k}.W"].copy(), p["b"], p["G"], p["g"]))
    return layers


@pytest.fixture(scope="module", params=CASES)
def trained(request, tmp_path_factory):
    """One batched run, learning from step BURNIN on, and the oracle's run of the same batch."""
    device, optimizer = request.param
    spec = make_spec(optimizer)
    folder = tmp_path_factory.mktemp(f"batch_conv_{optimizer}") if device != "runtime" else None
    sim = Simulator(spec, T, device=device, build_dir=folder, probes=("u", "s"))
    params = make_params(spec)
    counts = make_batch()
    inputs = pack_batch([(counts[b], LABELS[b]) for b in range(B)], T, N_CLASSES, lr=spec.learning.lr,
                        burnin=BURNIN, learn=True, dropout=spec.learning.dropout,
                        layer_sizes=spec.layer_sizes()[1:], rng=np.random.default_rng(5))
    out = sim.run_chunk(inputs, {k: v.copy() for k, v in params.items()})
    full = [full_probes(lo) for lo in sim.net.layers]
    layers = reference_layers(spec, params)
    masks = [from_units(m, B) for m in inputs.masks]
    assert not np.array_equal(masks[0][:, 0], masks[0][:, 1])  # dropout masks per sample
    expected = run_batch(layers, counts, LABELS, n_classes=N_CLASSES, burnin=BURNIN, learn=True, loss="smoothl1",
                         surrogate="fast_sigmoid", slope=10.0, optimizer=optimizer, lr=spec.learning.lr, masks=masks)
    return device, spec, sim, params, out, full, layers, expected


def test_forward_agrees_with_batched_reference(trained):
    _, spec, _, _, out, full, _, expected = trained
    for k, layer in enumerate(spec.layers):
        spikes = from_units(out.probes[k]["s"], B)
        assert 0.02 * spikes.size < spikes.sum() < 0.8 * spikes.size, f"layer {k + 1}: test would be weak"
        assert not np.array_equal(spikes[:, 0], spikes[:, 1])  # the samples really differ
        np.testing.assert_array_equal(spikes, expected["spikes"][k], err_msg=f"spikes of layer {k + 1}")
        np.testing.assert_allclose(from_units(out.probes[k]["u"], B), expected["u"][k], rtol=0, atol=1e-9,
                                   err_msg=f"U of layer {k + 1}")
        np.testing.assert_allclose(from_units(out.y[k], B), expected["y"][k], rtol=0, atol=1e-9,
                                   err_msg=f"readout of layer {k + 1}")
        if layer.kind == "conv":  # every sample's full-resolution units, pooled per sample
            np.testing.assert_array_equal(from_units(full[k]["s"], B), expected["spikes_full"][k],
                                          err_msg=f"full spikes of layer {k + 1}")
            np.testing.assert_allclose(from_units(full[k]["u"], B), expected["u_full"][k], rtol=0, atol=1e-9,
                                       err_msg=f"full-resolution U of layer {k + 1}")


def test_shared_parameters_agree_with_batched_reference(trained):
    device, spec, sim, params, out, _, layers, expected = trained
    for k, (layer, ref_layer) in enumerate(zip(spec.layers, layers, strict=True), start=1):
        key = "K" if layer.kind == "conv" else "W"
        for name, value in ((key, getattr(ref_layer, key)), ("b", ref_layer.b)):
            new = out.params[f"layer{k}.{name}"]
            assert not np.allclose(new, params[f"layer{k}.{name}"]), f"layer{k}.{name} did not learn"
            np.testing.assert_allclose(new, value, rtol=1e-6, atol=1e-12, err_msg=f"layer{k}.{name}")
            assert_change_close(new, value, params[f"layer{k}.{name}"], f"layer{k}.{name}")
        for name in ("G", "g"):  # the fixed readout comes back as it went in
            np.testing.assert_array_equal(out.params[f"layer{k}.{name}"], params[f"layer{k}.{name}"])
        if spec.learning.optimizer == "adamax":
            for name in (key, "b"):
                np.testing.assert_allclose(out.params[f"layer{k}.v_{name}"], expected["opt_state"][k - 1][name],
                                           rtol=1e-6, atol=1e-12, err_msg=f"layer{k}.v_{name}")
    for lo, layer in zip(sim.net.layers[:2], spec.layers[:2], strict=True):  # stored once, not once per sample
        assert sorted(lo.learned_state().values()) == sorted([math.prod(layer.kernel_shape), layer.channels])
        assert len(lo.full) == B * layer.n_full and len(lo.group) == B * layer.n
    if device != "runtime":  # the batched conv loops: no forward synapse is created or stored
        code = sim.build_dir / "code_objects"
        assert not list(code.glob("forward*_synapses_create*.cpp"))
        # Brian suffixes a name still taken by an object of an earlier test in this process (_1, _2, ...)
        (gradient,) = code.glob("forward1_summed_variable_gw_pre_codeobject*.cpp")
        assert "_B = 3" in gradient.read_text()


def test_batched_connectivity_is_one_list_per_sample():
    """The runtime device's explicit list: every sample's taps onto its own full units, reading the shared kernel."""
    pre, post = conv_connectivity(L1)
    pre_b, post_b = conv_connectivity(L1, batch=B)
    assert len(pre_b) == B * len(pre) == B * L1.n_synapses
    for b in range(B):  # sample outermost, each sample's part in the unbatched order
        part = slice(b * len(pre), (b + 1) * len(pre))
        np.testing.assert_array_equal(pre_b[part], pre)
        np.testing.assert_array_equal(post_b[part], post * B + b)


def test_batched_conv_spec_checks():
    online = make_spec("sgd", batch_size=1)
    assert online.structure_key() == NetworkSpec(  # batch 1: the online network, same build
        n_inputs=online.n_inputs, input_shape=INPUT_SHAPE, layers=online.layers, n_classes=N_CLASSES,
        learning=online.learning).structure_key()
    assert make_spec("sgd").validate().structure_key() != online.structure_key()
    make_spec("adamax", batch_size=4).validate()
    with pytest.raises(SpecError, match=r"network.layers\[0\]: batches \(batch_size = 3\) in mode 'event' are built "
                                        r"for dense layers only .*use mode 'exact'"):
        make_spec("sgd", layers=(L1, L2), mode="event").validate()


def test_training_loop_feeds_batched_conv_runtime():
    """iter_chunks of a batched conv network: each batch of B samples in order is one run_batch of the oracle, a
    last partial batch is left out while learning, and evaluation in batches votes as the online oracle."""
    spec = make_spec("adamax")
    params = make_params(spec)
    rng = np.random.default_rng(7)
    n_samples = 2 * B + 1
    counts = make_batch(n_samples, seed=8)
    labels = rng.integers(0, N_CLASSES, n_samples)
    order = rng.permutation(n_samples)
    assert_batched_loop_is_oracle(Simulator(spec, T, device="runtime"), params, counts, labels, order,
                                  reference_layers(spec, params), burnin=BURNIN)


def test_stop_then_resume_in_batched_conv_is_exact_runtime():
    """Stopped after the first batch of an epoch and resumed: the parameters equal the uninterrupted run's bit
    for bit (each batch's masks come from the run's generator, and the last partial batch is left out)."""
    from decolle_brian.loop import TrainingLoop, TrainingState  # noqa: PLC0415

    spec = make_spec("sgd")
    sim = Simulator(spec, T, device="runtime")
    rng = np.random.default_rng(3)
    train = ListSamples(make_batch(2 * B + 1, seed=4), rng.integers(0, N_CLASSES, 2 * B + 1))
    test = ListSamples(make_batch(2, seed=6), [0, 1])

    def loop(state=None, generator=None, params=None):
        return TrainingLoop(sim, train, test, params if params is not None else make_params(spec),
                            generator if generator is not None else np.random.default_rng(11),
                            state or TrainingState(), epochs=2, lr_schedule=lambda epoch: spec.learning.lr,
                            eval_every=2)

    assert_stop_then_resume_is_exact(loop, B, 2 * 2 * B, make_params(spec)["layer1.K"], key="layer1.K")


CLI_CONFIG = """
name = "conv_batch"
seed = 1
[data]
dataset = "digits"
train_samples = 9
test_samples = 4
[data.params]
n_steps = 20
[network]
layers = [{kind = "conv", channels = 2, kernel = 3, padding = 1, pool = 2}, 8]
[learning]
optimizer = "adamax"
lr = 1e-3
burnin = 5
[training]
epochs = 1
batch_size = 4
progress = false
[device]
name = "runtime"
"""


def test_cli_trains_a_batched_conv_network_end_to_end(tmp_path):
    """``decolle-brian train`` on a conv -> dense configuration with training.batch_size = 4: two batches of 4 (the
    ninth sample waits for the next epoch), evaluated in batches, the kernel learned and stored in the checkpoint."""
    from decolle_brian.cli import main  # noqa: PLC0415
    from decolle_brian.store import read_checkpoint, read_metrics  # noqa: PLC0415

    path = tmp_path / "conv_batch.toml"
    path.write_text(CLI_CONFIG)
    assert main(["train", str(path), "--out", str(tmp_path / "out")]) == 0
    (run_dir,) = (tmp_path / "out" / "conv_batch").iterdir()
    params, state = read_checkpoint(run_dir)
    assert params["layer1.K"].shape == (2, 1, 3, 3) and params["layer2.W"].shape == (8, 2 * 4 * 4)
    assert state["samples_seen"] == 8
    assert read_metrics(run_dir)


def test_explicit_list_beyond_int32_is_refused_before_it_is_made():
    """The runtime device's explicit conv synapse list (one per tap and sample) would pass Brian's int32 index:
    a clear error naming the layer and the fix, before the list is made."""
    layer = ConvLayerSpec(channels=64, kernel=7, in_shape=(64, 32, 32), padding=3, pool=1)
    assert layer.n_synapses * 16 > MAX_SYNAPSES > layer.n_synapses
    spec = NetworkSpec(n_inputs=64 * 32 * 32, input_shape=(64, 32, 32), layers=(layer,), n_classes=4,
                       batch_size=16, learning=LearningSpec(optimizer="sgd", lr=1e-3))
    with pytest.raises(SpecError, match=r"network.layers\[0\]: .*int32.*cpp_standalone device"):
        Simulator(spec, 10, device="runtime")
