"""Conv DECOLLE layers (shared kernel, max-pool on U before the spike) agree with the NumPy reference.

A conv-pool-conv network (2x12x12 input; 4 channels 3x3 padding 1, pool 2; 8 channels 5x5 padding 1, no
pool), fixed random weights, input event counts > 1, 120 steps: pooled and full-resolution spikes identical
and U within 1e-9 on the runtime (numpy) and the C++ standalone device; after one learning sample (SGD and
Adamax, dropout masks shared with the reference) kernels, biases and Adamax state within 1e-6 relative.
Each (device, optimiser) network is compiled once and shared by the tests of its class.
"""

import math
from dataclasses import replace

import numpy as np
import pytest
from brian2.core.variables import DynamicArrayVariable
from samples import assert_change_close

from decolle_brian import reference as ref
from decolle_brian.backends.conv_loops import conv_code_lines
from decolle_brian.derivation import derive
from decolle_brian.devices import Simulator
from decolle_brian.emission import conv_code
from decolle_brian.network.chunks import pack_chunk
from decolle_brian.network.conv import conv_connectivity, full_probes, gradient_gates
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import ConvLayerSpec, DenseLayerSpec, LearningSpec, NetworkSpec, SpecError
from decolle_brian.presets import dvsgesture_spec, nmnist_conv_spec

T, BURNIN, N_CLASSES, LABEL = 120, 20, 4, 2
INPUT_SHAPE = (2, 12, 12)
L1 = ConvLayerSpec(channels=4, kernel=3, in_shape=INPUT_SHAPE, padding=1, pool=2)
L2 = ConvLayerSpec(channels=8, kernel=5, in_shape=L1.out_shape, padding=1, pool=1)
#: sizes at which the C++ loops' blocks and tiles run whole and in part (backends/conv_loops.py): 70 input
#: channels into conv 2 (a whole gradient tile of 64 + 6), 24 output channels (3 blocks of 8), odd width, pool
#: remainder
WIDE_SHAPE = (2, 7, 9)
WIDE_LAYERS = (ConvLayerSpec(channels=70, kernel=3, in_shape=WIDE_SHAPE, padding=1, pool=1),
               ConvLayerSpec(channels=24, kernel=3, in_shape=(70, 7, 9), padding=1, pool=2))
DEVICES = ["runtime", pytest.param("cpp_standalone", marks=pytest.mark.standalone)]
#: devices whose conv layers run as loops over the convolution (no synapse list; decolle_brian.backends.conv_loops)
LOOP_DEVICES = ("cpp_standalone",)


def make_spec(optimizer: str, layers=(L1, L2), input_shape=INPUT_SHAPE) -> NetworkSpec:
    return NetworkSpec(
        n_inputs=math.prod(input_shape), input_shape=input_shape, layers=tuple(layers), n_classes=N_CLASSES,
        learning=LearningSpec(optimizer=optimizer, lr=3e-3 if optimizer == "sgd" else 1e-3, dropout=0.5,
                              burnin=BURNIN),
    )


def make_params(spec, seed=1, gain=3.0):
    params = init_params(spec, np.random.default_rng(seed))
    for index in range(1, len(spec.layers) + 1):
        params[f"layer{index}.K"] *= gain  # strong enough that every layer fires
    return params


def make_input(n_inputs, seed=2):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.15, (T, n_inputs)).astype(float)
    counts[rng.random((T, n_inputs)) < 0.02] += 2  # some counts > 1 (several events in one bin)
    assert counts.max() > 1
    return counts


def reference_layers(spec, params):
    return [ref.ConvLayer(params[f"layer{k}.K"].copy(), params[f"layer{k}.b"].copy(), params[f"layer{k}.G"].copy(),
                          params[f"layer{k}.g"].copy(), layer.padding, layer.pool, layer.in_shape)
            for k, layer in enumerate(spec.layers, start=1)]


def run_both(spec, sim, *, learn, masks_seed=None, counts=None, params=None):
    params = make_params(spec) if params is None else params
    counts = make_input(spec.n_inputs) if counts is None else counts
    rng = np.random.default_rng(masks_seed) if masks_seed is not None else None
    inputs, _ = pack_chunk([(counts, LABEL)], T, N_CLASSES, lr=spec.learning.lr, burnin=BURNIN, learn=learn,
                           dropout=spec.learning.dropout, layer_sizes=spec.layer_sizes()[1:], rng=rng)
    out = sim.run_chunk(inputs, params)
    layers = reference_layers(spec, params)
    expected = ref.run_sample(
        layers, counts, LABEL, n_classes=N_CLASSES, burnin=BURNIN, learn=learn, loss="smoothl1",
        surrogate="fast_sigmoid", slope=10.0, optimizer=spec.learning.optimizer, lr=spec.learning.lr,
        masks=inputs.masks if learn else None,
    )
    full = [full_probes(lo) for lo in sim.net.layers]
    return params, out, full, layers, expected


def assert_forward_equal(out, full, expected, n_layers):
    for k in range(n_layers):
        spikes = out.probes[k]["s"]
        assert 0.02 * spikes.size < spikes.sum() < 0.8 * spikes.size, f"layer {k + 1}: test would be weak"
        np.testing.assert_array_equal(spikes, expected["spikes"][k], err_msg=f"pooled spikes of layer {k + 1}")
        np.testing.assert_array_equal(full[k]["s"], expected["spikes_full"][k], err_msg=f"full spikes {k + 1}")
        np.testing.assert_allclose(out.probes[k]["u"], expected["u"][k], rtol=0, atol=1e-9,
                                   err_msg=f"pooled u of layer {k + 1}")
        np.testing.assert_allclose(full[k]["u"], expected["u_full"][k], rtol=0, atol=1e-9,
                                   err_msg=f"full-resolution U of layer {k + 1}")
        np.testing.assert_allclose(out.y[k], expected["y"][k], rtol=0, atol=1e-9, err_msg=f"readout {k + 1}")


def assert_params_close(out, layers, params):
    for k, layer in enumerate(layers, start=1):
        for name, value in (("K", layer.K), ("b", layer.b)):
            new = out.params[f"layer{k}.{name}"]
            assert not np.allclose(new, params[f"layer{k}.{name}"]), f"layer{k}.{name} did not learn"
            np.testing.assert_allclose(new, value, rtol=1e-6, atol=1e-12, err_msg=f"layer{k}.{name}")
            assert_change_close(new, value, params[f"layer{k}.{name}"], f"layer{k}.{name}")


def assert_signals_equal(out, full, expected, n_layers):
    for k in range(n_layers):  # the learning signal on the pooled units and routed to the max winners
        np.testing.assert_allclose(out.probes[k]["delta"][BURNIN:], expected["err_signal"][k][BURNIN:],
                                   rtol=1e-9, atol=1e-12, err_msg=f"pooled learning signal of layer {k + 1}")
        np.testing.assert_allclose(full[k]["delta"][BURNIN:], expected["err_full"][k][BURNIN:],
                                   rtol=1e-9, atol=1e-12, err_msg=f"routed learning signal of layer {k + 1}")


def sim_fixture(optimizer):
    @pytest.fixture(scope="class", params=DEVICES)
    def fixture(request, tmp_path_factory):
        spec = make_spec(optimizer)
        build = tmp_path_factory.mktemp(f"conv_{optimizer}") if request.param != "runtime" else None
        sim = Simulator(spec, T, device=request.param, build_dir=build, probes=("u", "s", "delta"))
        return spec, sim
    return fixture


sim_sgd = sim_fixture("sgd")
sim_adamax = sim_fixture("adamax")


class TestSGD:
    def test_forward_fixed_weights(self, sim_sgd):
        spec, sim = sim_sgd
        params, out, full, _, expected = run_both(spec, sim, learn=False)
        assert_forward_equal(out, full, expected, len(spec.layers))
        # pooling matters: the pooled layer fires more often than its average full-resolution unit
        assert expected["spikes"][0].mean() > expected["spikes_full"][0].mean()
        for key, value in params.items():  # no learning: nothing moved
            np.testing.assert_array_equal(out.params[key], value)

    def test_learning_sample_with_dropout(self, sim_sgd):
        spec, sim = sim_sgd
        params, out, full, layers, expected = run_both(spec, sim, learn=True, masks_seed=5)
        assert_forward_equal(out, full, expected, len(spec.layers))
        assert_signals_equal(out, full, expected, len(spec.layers))
        assert_params_close(out, layers, params)

    def test_learned_state_is_the_kernel(self, sim_sgd):
        """Brian stores one value per kernel element and bias, none per synapse (no unrolled copy)."""
        spec, sim = sim_sgd
        for layer, lo in zip(spec.layers, sim.net.layers, strict=True):
            c_out, c_in, kh, kw = layer.kernel_shape
            real_conv = c_out * c_in * kh * kw + c_out  # torch.nn.Conv2d(c_in, c_out, k).parameters()
            assert sum(lo.learned_state().values()) == real_conv
            assert len(lo.kernel) == c_out * c_in * kh * kw and len(lo.bias) == c_out
            stored = [eq.varname for eq in lo.forward.equations.ordered
                      if eq.type == "parameter" and "linked" not in eq.flags]
            assert stored == ["in_idx"], stored  # the model stores an integer index per synapse, no weight
            floats = [name for name, var in lo.forward.variables.items() if isinstance(var, DynamicArrayVariable)
                      and var.owner.name == lo.forward.name and np.issubdtype(var.dtype, np.floating)]
            assert floats == [], floats  # nor does Brian (only its int32 index arrays)
        # every learned parameter array maps onto exactly these Brian values
        learned = [binding for key, binding in sim.net.bindings.items() if key.rsplit(".", 1)[1] in ("K", "b")]
        assert sum(len(binding.view_owner.variables[binding.variable].get_value()) for binding in learned) == sum(
            math.prod(layer.kernel_shape) + layer.channels for layer in spec.layers)

    def test_synapses_are_the_taps_inside_the_input(self, sim_sgd):
        """An explicit synapse list (runtime) holds every tap inside the input; the conv loops (C++) none."""
        spec, sim = sim_sgd
        loops = sim.device_name in LOOP_DEVICES
        if loops:  # the index arrays are internal: written after a run only when every array is
            sim.write_all_results = True
            try:
                run_both(spec, sim, learn=False)
            finally:
                sim.write_all_results = False
        for layer, lo in zip(spec.layers, sim.net.layers, strict=True):
            c_out, c_in, k, _ = layer.kernel_shape
            _, h, w = layer.in_shape
            _, hf, wf = layer.full_shape
            rows = sum(0 <= y + a - layer.padding < h for y in range(hf) for a in range(k))
            cols = sum(0 <= x + e - layer.padding < w for x in range(wf) for e in range(k))
            assert layer.n_synapses == c_out * c_in * rows * cols > 10 * c_out * c_in * k * k
            assert len(lo.forward) == (0 if loops else layer.n_synapses)
            if loops:  # nothing per synapse exists in the binary either: every index array is empty
                for name in ("_synaptic_pre", "_synaptic_post", "in_idx"):
                    assert len(lo.forward.variables[name].get_value()) == 0, name

    def test_kernel_gradient_only_while_learning(self, sim_sgd):
        """The conv loops compute no kernel gradient in evaluation and burn-in (lr = 0), one while learning."""
        spec, sim = sim_sgd
        if sim.device_name not in LOOP_DEVICES:
            pytest.skip("Brian's generic summed variable computes the gradient every step (exact, unused)")
        sim.write_all_results = True  # the gradient gw is internal: not read back after a run otherwise
        try:
            self._gradient_only_while_learning(spec, sim)
        finally:
            sim.write_all_results = False

    @staticmethod
    def _gradient_only_while_learning(spec, sim):
        run_both(spec, sim, learn=False)
        for lo in sim.net.layers:  # the last step of an evaluation: the gradient loop did not run
            np.testing.assert_array_equal(lo.kernel.variables["gw"].get_value(), 0)
        params, counts = make_params(spec), make_input(spec.n_inputs)
        for burnin, learning in ((T, False), (BURNIN, True)):  # the last step in burn-in; the last step learning
            inputs, _ = pack_chunk([(counts, LABEL)], T, N_CLASSES, lr=spec.learning.lr, burnin=burnin, learn=True,
                                   dropout=spec.learning.dropout, layer_sizes=spec.layer_sizes()[1:],
                                   rng=np.random.default_rng(5))
            sim.run_chunk(inputs, params)
            gradients = [lo.kernel.variables["gw"].get_value() for lo in sim.net.layers]
            assert [bool(g.any()) for g in gradients] == [learning] * len(gradients), burnin


def test_connectivity_is_the_convolution():
    """The synapse list is exactly the taps of a zero-padded cross-correlation, each once, in any order."""
    layer = ConvLayerSpec(channels=5, kernel=3, in_shape=(2, 6, 7), padding=1, pool=1)
    expected = {(((o * 2 + c) * 3 + a) * 3 + e, o * 42 + y * 7 + x)
                for o in range(5) for c in range(2) for a in range(3) for e in range(3) for y in range(6)
                for x in range(7) if 0 <= y + a - 1 < 6 and 0 <= x + e - 1 < 7}
    for group in (1, 3, 8):
        pre, post = conv_connectivity(layer, group)
        assert pre.dtype == post.dtype == np.int32 and len(pre) == len(expected)
        assert set(zip(pre.tolist(), post.tolist(), strict=True)) == expected
    assert layer.n_synapses == len(expected)


@pytest.mark.parametrize("kernel, padding", [(3, 0), (5, 2), (5, 4), (7, 1)])
def test_n_synapses_counts_the_taps_inside_the_input(kernel, padding):
    layer = ConvLayerSpec(channels=3, kernel=kernel, in_shape=(2, 8, 9), padding=padding, pool=1)
    _, hf, wf = layer.full_shape
    inside = sum(0 <= y + a - padding < 8 and 0 <= x + e - padding < 9
                 for y in range(hf) for x in range(wf) for a in range(kernel) for e in range(kernel))
    assert layer.n_synapses == 3 * 2 * inside == len(conv_connectivity(layer)[0])


class TestAdamax:
    def test_learning_sample_with_dropout(self, sim_adamax):
        spec, sim = sim_adamax
        params, out, full, layers, expected = run_both(spec, sim, learn=True, masks_seed=6)
        assert_forward_equal(out, full, expected, len(spec.layers))
        assert_signals_equal(out, full, expected, len(spec.layers))
        assert_params_close(out, layers, params)
        state = expected["opt_state"]
        for k in range(1, len(spec.layers) + 1):
            for name in ("K", "b"):
                np.testing.assert_allclose(out.params[f"layer{k}.v_{name}"], state[k - 1][name], rtol=1e-6,
                                           atol=1e-12, err_msg=f"layer{k}.v_{name}")


def run_wide(tmp_path_factory, name, threads=1):
    """The WIDE_LAYERS network learning one sample (SGD, dropout) on the C++ standalone device, checked against
    the NumPy reference; returns the run's outputs, full-resolution probes and the code of its build."""
    spec = make_spec("sgd", layers=WIDE_LAYERS, input_shape=WIDE_SHAPE)
    build = tmp_path_factory.mktemp(f"conv_wide_{name}")
    sim = Simulator(spec, T, device="cpp_standalone", threads=threads, probes=("u", "s", "delta"), build_dir=build)
    params, out, full, ref_layers, expected = run_both(spec, sim, learn=True, masks_seed=6,
                                                       params=make_params(spec, gain=1.5))
    assert_forward_equal(out, full, expected, len(WIDE_LAYERS))
    assert_signals_equal(out, full, expected, len(WIDE_LAYERS))
    assert_params_close(out, ref_layers, params)
    code = "".join(path.read_text() for path in build.rglob("*.cpp") if path.parent.name == "code_objects")
    return out, full, code


def assert_runs_equal(one, two, what):
    (out_one, full_one), (out_two, full_two) = one, two
    for name, value in out_one.params.items():
        np.testing.assert_array_equal(out_two.params[name], value, err_msg=f"{name}: {what}")
    for k in range(len(WIDE_LAYERS)):
        np.testing.assert_array_equal(full_two[k]["u"], full_one[k]["u"], err_msg=f"full U {k + 1}: {what}")
        np.testing.assert_array_equal(out_two.y[k], out_one.y[k], err_msg=f"readout {k + 1}: {what}")


@pytest.mark.standalone
def test_wide_layers_on_one_and_two_threads(tmp_path_factory, monkeypatch):
    """Sizes at which the C++ loops' blocks and tiles run whole and in part (backends/conv_loops.py): 70 input
    channels into conv 2 (one whole gradient tile of 64 + 6), 24 output channels (3 blocks of 8 register taps),
    an odd width, a pool-2 remainder. Learning (SGD, dropout) agrees with the NumPy reference as the small
    network does, and a 2-thread binary gives the 1-thread results bit for bit; the 2-thread binary also sums
    every row of the readouts (``row_skips`` not used): skipping the rows of silent units changes no bit."""
    from decolle_brian.network import builder

    one = run_wide(tmp_path_factory, "1t")
    monkeypatch.setattr(builder, "row_skips", lambda synapses: {})
    two = run_wide(tmp_path_factory, "2t", threads=2)
    assert_runs_equal(one[:2], two[:2], "2 threads, every readout row summed")


@pytest.mark.standalone
def test_padded_gradient_adds_the_same_terms_in_the_same_order(tmp_path_factory, monkeypatch):
    """The kernel gradient over the zero-padded input (``zero_input`` proven) and the bounded-tap gradient
    (the proof withheld) add each kernel element's terms in the same order: the two binaries learn the same
    parameters to the bit (the NumPy comparisons above allow 1e-6)."""
    from decolle_brian.network import conv

    *padded, padded_code = run_wide(tmp_path_factory, "padded")
    proven = conv.gradient_gates
    monkeypatch.setattr(conv, "gradient_gates", lambda code: replace(proven(code), zero_input=None))
    *bounded, bounded_code = run_wide(tmp_path_factory, "bounded")
    # which gradient loop ran: the padded copy's comment is in the generated code only where it is proven
    assert "zero-padded, tile-major" in padded_code and "zero-padded, tile-major" not in bounded_code
    assert_runs_equal(padded, bounded, "padded gradient vs bounded taps")


@pytest.mark.standalone
def test_padding_geometries_standalone(tmp_path_factory):
    """Paddings the loops special-case, in one small build: k = 3 with padding 3 > k - 1 (whole output rows
    and columns read only padding: the forward and gradient row skips run empty ranges), k = 3 without
    padding (no padding rows: nothing skipped), k = 1 with padding 1 (the zero-padded gradient for a 1 x 1
    kernel, the border units reading only padding). Learning agrees with the NumPy reference."""
    shape = (2, 6, 7)
    first = ConvLayerSpec(channels=5, kernel=3, in_shape=shape, padding=3, pool=1)
    second = ConvLayerSpec(channels=6, kernel=3, in_shape=first.out_shape, padding=0, pool=2)
    third = ConvLayerSpec(channels=4, kernel=1, in_shape=second.out_shape, padding=1, pool=1)
    spec = make_spec("sgd", layers=(first, second, third), input_shape=shape)
    sim = Simulator(spec, T, device="cpp_standalone", probes=("u", "s", "delta"),
                    build_dir=tmp_path_factory.mktemp("conv_paddings"))
    params, out, full, ref_layers, expected = run_both(spec, sim, learn=True, masks_seed=7,
                                                       params=make_params(spec, gain=2.0))
    assert_forward_equal(out, full, expected, len(spec.layers))
    assert_signals_equal(out, full, expected, len(spec.layers))
    assert_params_close(out, ref_layers, params)


def test_pool_remainder_and_ties_runtime():
    """Floor-mode remainder (7x7 pooled by 2) and tied maxima (silent input region): routed as the reference."""
    layer = ConvLayerSpec(channels=3, kernel=3, in_shape=(1, 7, 7), padding=1, pool=2)
    spec = make_spec("sgd", layers=(layer,), input_shape=(1, 7, 7))
    sim = Simulator(spec, T, device="runtime", probes=("u", "s", "delta"))
    counts = make_input(spec.n_inputs, seed=3).reshape(T, 1, 7, 7)
    counts[:, :, :, :3] = 0  # the left columns never see an event: U there is b + R, equal across a window
    params = make_params(spec, seed=4, gain=4.0)
    params, out, full, layers, expected = run_both(spec, sim, learn=True, masks_seed=7,
                                                   counts=counts.reshape(T, -1), params=params)
    assert_forward_equal(out, full, expected, 1)
    assert_signals_equal(out, full, expected, 1)
    assert_params_close(out, layers, params)
    # the test saw ties: windows whose max is taken by more than one unit while a learning signal flows
    u_full = expected["u_full"][0].reshape(T, 3, 7, 7)[:, :, :6, :6].reshape(T, 3, 3, 2, 3, 2)
    windows = u_full.transpose(0, 1, 2, 4, 3, 5).reshape(T, 3, 3, 3, 4)
    tied = (windows == windows.max(axis=-1, keepdims=True)).sum(axis=-1) > 1
    signal = expected["err_signal"][0].reshape(T, 3, 3, 3) != 0
    assert np.sum(tied[BURNIN:] & signal[BURNIN:]) > 10
    # the remainder (last row and column) never gets a learning signal
    err_full = expected["err_full"][0].reshape(T, 3, 7, 7)
    assert not err_full[:, :, 6, :].any() and not err_full[:, :, :, 6].any()
    np.testing.assert_array_equal(full[0]["delta"].reshape(T, 3, 7, 7)[:, :, 6, :], 0)


def test_conv_rule_is_derived():
    """The conv factors come out of the chain rule through the model files, for any surrogate."""
    code = conv_code(derive(), "sgd")
    assert code.kernel_gradient == "delta_post*p_in"          # dU/dw_pre * E_post, summed into the kernel
    assert code.bias_gradient == "delta_pre"                  # dU/db * E, summed over the channel
    assert code.full_neuron == "delta = delta_pool*int(win_pool == slot)"  # d max / d U_full
    assert "10.0*abs(u)" in code.pool_neuron
    boxcar = conv_code(derive("mse", "boxcar"), "adamax")
    assert "0.5" in boxcar.pool_neuron and "v_w" in boxcar.shared.statements


def test_conv_spec_checks():
    with pytest.raises(SpecError, match=r"layers\[1\].in_shape"):
        NetworkSpec(n_inputs=288, input_shape=INPUT_SHAPE, layers=(L1, L1), n_classes=4).validate()
    with pytest.raises(SpecError, match="input_shape"):
        NetworkSpec(n_inputs=100, input_shape=INPUT_SHAPE, layers=(L1,), n_classes=4).validate()
    with pytest.raises(SpecError, match="kernel"):
        ConvLayerSpec(channels=2, kernel=9, in_shape=(1, 4, 4)).validate("l")
    with pytest.raises(SpecError, match="pool"):
        ConvLayerSpec(channels=2, kernel=3, in_shape=(1, 4, 4), pool=3).validate("l")
    # a conv layer after a dense one reads its output in C order
    NetworkSpec(n_inputs=10, layers=(DenseLayerSpec(144), ConvLayerSpec(2, 3, (1, 12, 12))), n_classes=4).validate()
    assert L1.n == 4 * 6 * 6 and L2.n == 8 * 4 * 4


def test_presets():
    spec = dvsgesture_spec().validate()
    assert [layer.out_shape for layer in spec.layers] == [(64, 16, 16), (128, 16, 16), (128, 8, 8)]
    assert [layer.full_shape for layer in spec.layers] == [(64, 32, 32), (128, 16, 16), (128, 16, 16)]
    assert spec.n_classes == 11 and spec.learning.burnin == 100 and spec.learning.optimizer == "adamax"
    params = init_params(spec, np.random.default_rng(0))
    assert params["layer2.K"].shape == (128, 64, 7, 7) and params["layer3.b"].shape == (128,)
    assert params["layer1.G"].shape == (11, 64 * 16 * 16)
    assert np.abs(params["layer2.K"]).max() <= 1 / np.sqrt(64 * 49)
    nmnist = nmnist_conv_spec().validate()
    assert nmnist.n_classes == 10 and nmnist.learning.burnin == 60


def test_gradient_skips_are_proven_for_the_derived_rule():
    """The conv loops skip the kernel gradient only where the derived code makes it provably unused."""
    for optimizer in ("sgd", "adamax"):
        gates = gradient_gates(conv_code(derive(), optimizer))
        assert (gates.gradient, gates.skip_zero, gates.gate) == ("gw_pre", "delta_post", "lr_pre")
    code = conv_code(derive(), "adamax")
    # a summand that does not vanish with delta, a step that moves without lr: no skip
    assert gradient_gates(replace(code, kernel_gradient="delta_post*p_in + p_in")).skip_zero is None
    assert gradient_gates(replace(code, shared=replace(code.shared, statements="w -= 0.1 * gw"))).gate is None
    assert gradient_gates(replace(code, shared=replace(code.shared, statements="v_w = abs(gw)\nw -= lr * gw"))
                          ).gate is None


def test_padded_gradient_and_row_skips_are_proven():
    """The gradient sums over a zero-padded input only if a zero input makes the summand 0; a readout's rows
    are skipped only for the summed variable that vanishes without the spike."""
    from brian2 import NeuronGroup, Synapses

    from decolle_brian.network.builder import row_skips

    code = conv_code(derive(), "adamax")
    assert gradient_gates(code).zero_input == "p_in"
    assert gradient_gates(replace(code, kernel_gradient="delta_post*(p_in + 1)")).zero_input is None
    group = NeuronGroup(3, "s : 1\nmask : 1\nbp : 1")
    readout = NeuronGroup(2, "y_syn : 1\nerr : 1")
    synapses = Synapses(group, readout, "G : 1\ny_syn_post = G * mask_pre * s_pre : 1 (summed)\n"
                                        "bp_pre = G * err_post : 1 (summed)")
    assert row_skips(synapses) == {"y_syn_post": "s_pre"}


def test_conv_loops_refuse_a_forward_sum_not_zero_on_the_padding():
    """The forward loop adds the zero padding's taps: a summand not proven 0 at input 0 is refused, clearly."""
    from decolle_brian.backends.conv_loops import check_forward_padding

    check_forward_padding("u_syn_post", "w_pre * p_in", ["p_in"])
    with pytest.raises(NotImplementedError, match=r"u_syn_post = w_pre \* \(p_in \+ 1\) is not proven 0"):
        check_forward_padding("u_syn_post", "w_pre * (p_in + 1)", ["p_in"])


def test_conv_loops_refuse_other_per_synapse_values():
    """The loops compute three indices; code reading any other per-synapse array is refused, not miscomputed."""
    arrays = {"_synaptic_pre": "pre", "_synaptic_post": "post", "in_idx": "idx"}
    code = ["const int32_t _presynaptic_idx = pre[_idx];", "const int32_t in_idx = idx[_idx];",
            "const double p_in = p[in_idx];", "const double _synaptic_var = w[_presynaptic_idx] * p_in;"]
    assert conv_code_lines(code, arrays) == code[2:]
    with pytest.raises(NotImplementedError, match="scale"):
        conv_code_lines([*code, "const double scale = scale_array[_idx];"], arrays)
