"""The core: the Brian2 network agrees step for step with the independent NumPy reference.

Three layers, fixed random weights, inputs with event counts > 1, >= 200 steps: spikes identical and U
within 1e-9 on the runtime and the C++ standalone device (1 and 2 OpenMP threads); after one learning sample
of 200 steps (SGD and Adamax, with dropout masks shared with the reference) every weight and bias within 1e-6
relative. Each (device, threads, optimiser) network is compiled once and shared by the tests of its class.
Every built-in loss x surrogate is run once, smaller, on the runtime device.
"""

import numpy as np
import pytest
from samples import assert_change_close

from decolle_brian import reference as ref
from decolle_brian.devices import Simulator
from decolle_brian.network.chunks import pack_chunk
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec, NeuronParams

T, BURNIN, N_IN, SIZES, N_CLASSES = 200, 20, 40, (30, 20, 12), 4
#: (device, OpenMP threads): 2 threads split every row loop between threads (``omp for schedule(static)``)
DEVICES = [pytest.param(("runtime", 1), id="runtime"),
           pytest.param(("cpp_standalone", 1), id="cpp_standalone", marks=pytest.mark.standalone),
           pytest.param(("cpp_standalone", 2), id="cpp_standalone-omp2", marks=pytest.mark.standalone)]


def make_spec(optimizer: str) -> NetworkSpec:
    return NetworkSpec(
        n_inputs=N_IN, layers=tuple(DenseLayerSpec(n) for n in SIZES), n_classes=N_CLASSES,
        neuron=NeuronParams(), learning=LearningSpec(optimizer=optimizer, lr=3e-3 if optimizer == "sgd" else 1e-3,
                                                     dropout=0.5, burnin=BURNIN),
    )


def make_params(spec, seed=1):
    params = init_params(spec, np.random.default_rng(seed))
    for index in range(1, len(spec.layers) + 1):
        params[f"layer{index}.W"] *= 3.0   # strong enough that every layer fires
    return params


def make_input(seed=2):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.15, (T, N_IN)).astype(float)
    counts[rng.random((T, N_IN)) < 0.02] += 2  # some counts > 1 (several events in one bin)
    assert counts.max() > 1
    return counts


def reference_layers(params):
    return [ref.DenseLayer(params[f"layer{k}.W"].copy(), params[f"layer{k}.b"].copy(),
                           params[f"layer{k}.G"].copy(), params[f"layer{k}.g"].copy())
            for k in range(1, len(SIZES) + 1)]


def sim_fixture(optimizer):
    @pytest.fixture(scope="class", params=DEVICES)
    def fixture(request, tmp_path_factory):
        device, threads = request.param
        spec = make_spec(optimizer)
        build = tmp_path_factory.mktemp(f"build_{optimizer}_omp{threads}") if device != "runtime" else None
        sim = Simulator(spec, T, device=device, build_dir=build, threads=threads, probes=("u", "s", "delta"))
        if threads > 1:  # the binary really runs the loops in parallel
            assert "#pragma omp parallel" in (sim.build_dir / "code_objects" / "layer1_stateupdater_codeobject.cpp"
                                             ).read_text()
        return spec, sim
    return fixture


sim_sgd = sim_fixture("sgd")
sim_adamax = sim_fixture("adamax")


def run_both(spec, sim, *, learn, masks_seed=None):
    params = make_params(spec)
    counts, label = make_input(), 2
    rng = np.random.default_rng(masks_seed) if masks_seed is not None else None
    inputs, _ = pack_chunk([(counts, label)], T, N_CLASSES, lr=spec.learning.lr, burnin=BURNIN, learn=learn,
                           dropout=spec.learning.dropout if learn else 0.5, layer_sizes=list(SIZES), rng=rng)
    out = sim.run_chunk(inputs, params)
    layers = reference_layers(params)
    expected = ref.run_sample(
        layers, counts, label, n_classes=N_CLASSES, consts=ref.Constants(), burnin=BURNIN, learn=learn,
        loss="smoothl1", surrogate="fast_sigmoid", slope=10.0, optimizer=spec.learning.optimizer,
        lr=spec.learning.lr, masks=inputs.masks if learn else None,
    )
    return params, out, layers, expected


def assert_forward_equal(out, expected):
    for k in range(len(SIZES)):
        spikes = out.probes[k]["s"]
        assert spikes.sum() > 0.02 * spikes.size, f"layer {k + 1} barely fires: test would be weak"
        np.testing.assert_array_equal(spikes, expected["spikes"][k], err_msg=f"spikes of layer {k + 1}")
        np.testing.assert_allclose(out.probes[k]["u"], expected["u"][k], rtol=0, atol=1e-9,
                                   err_msg=f"membrane u of layer {k + 1}")
        np.testing.assert_allclose(out.y[k], expected["y"][k], rtol=0, atol=1e-9, err_msg=f"readout of layer {k + 1}")


def assert_params_close(out, layers, params):
    for k, layer in enumerate(layers, start=1):
        for name, value in (("W", layer.W), ("b", layer.b)):
            new = out.params[f"layer{k}.{name}"]
            assert not np.allclose(new, params[f"layer{k}.{name}"]), f"layer{k}.{name} did not learn"
            np.testing.assert_allclose(new, value, rtol=1e-6, atol=1e-12, err_msg=f"layer{k}.{name}")
            assert_change_close(new, value, params[f"layer{k}.{name}"], f"layer{k}.{name}")


class TestSGD:
    def test_forward_fixed_weights(self, sim_sgd):
        spec, sim = sim_sgd
        params, out, layers, expected = run_both(spec, sim, learn=False)
        assert_forward_equal(out, expected)
        for key, value in params.items():   # no learning: nothing moved
            np.testing.assert_array_equal(out.params[key], value)

    def test_learning_sample_with_dropout(self, sim_sgd):
        spec, sim = sim_sgd
        params, out, layers, expected = run_both(spec, sim, learn=True, masks_seed=5)
        assert_forward_equal(out, expected)
        assert_params_close(out, layers, params)
        for k in range(len(SIZES)):  # the learning signal E_i[t] itself, after burn-in
            np.testing.assert_allclose(out.probes[k]["delta"][BURNIN:], expected["err_signal"][k][BURNIN:],
                                       rtol=1e-9, atol=1e-12)


class TestAdamax:
    def test_learning_sample_with_dropout(self, sim_adamax):
        spec, sim = sim_adamax
        params, out, layers, expected = run_both(spec, sim, learn=True, masks_seed=6)
        assert_forward_equal(out, expected)
        assert_params_close(out, layers, params)
        state = expected["opt_state"]
        for k in range(1, len(SIZES) + 1):
            for name in ("W", "b"):
                assert np.any(state[k - 1][name] > 0), f"layer{k}: Adamax state v_{name} never moved"
                np.testing.assert_allclose(out.params[f"layer{k}.v_{name}"], state[k - 1][name], rtol=1e-6,
                                           atol=1e-12, err_msg=f"layer{k}.v_{name}")


def test_user_supplied_loss_end_to_end():
    """A loss given as an expression (here MSE written by hand, with a class sum) is derived, compiled into the
    network (runtime device) and learns exactly as the reference's built-in MSE."""
    user_loss = "sum((target - y)**2) / n_classes"
    spec = NetworkSpec(n_inputs=N_IN, layers=tuple(DenseLayerSpec(n) for n in SIZES[:2]), n_classes=N_CLASSES,
                       learning=LearningSpec(loss=user_loss, optimizer="sgd", lr=3e-3, dropout=0.0, burnin=BURNIN))
    sim = Simulator(spec, T, device="runtime", probes=("s",))
    params = make_params(spec)
    counts, label = make_input(), 1
    inputs, _ = pack_chunk([(counts, label)], T, N_CLASSES, lr=spec.learning.lr, burnin=BURNIN, learn=True,
                           dropout=0.0, layer_sizes=list(SIZES[:2]))
    out = sim.run_chunk(inputs, params)
    layers = [ref.DenseLayer(params[f"layer{k}.W"].copy(), params[f"layer{k}.b"].copy(), params[f"layer{k}.G"].copy(),
                             params[f"layer{k}.g"].copy()) for k in (1, 2)]
    ref.run_sample(layers, counts, label, n_classes=N_CLASSES, burnin=BURNIN, learn=True, loss="mse",
                   optimizer="sgd", lr=spec.learning.lr)
    for k, layer in enumerate(layers, start=1):
        assert not np.allclose(out.params[f"layer{k}.W"], params[f"layer{k}.W"])
        np.testing.assert_allclose(out.params[f"layer{k}.W"], layer.W, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(out.params[f"layer{k}.b"], layer.b, rtol=1e-6, atol=1e-12)


#: the surrogates' parameters in the oracle, explicitly: the PyTorch DECOLLE values (decolle/base_model.py:
#: FastSigmoid slope 10, SmoothStep width 1, SigmoidStep slope 1); the network uses the derivation's defaults
ORACLE_SURROGATE_PARAMS = {"fast_sigmoid": {"slope": 10.0}, "boxcar": {"width": 1.0}, "sigmoid": {"slope": 1.0}}
T_SMALL = 80


@pytest.mark.parametrize("surrogate", sorted(ORACLE_SURROGATE_PARAMS))
@pytest.mark.parametrize("loss", ["smoothl1", "mse", "ce"])
def test_every_builtin_loss_and_surrogate_on_the_runtime_device(loss, surrogate):
    """Two layers, 80 steps of one learning sample (SGD, dropout): spikes, U, readout and every learned
    weight and bias as the reference, with the tolerances of the tests above. The cross-entropy runs its
    class-sum synapses; boxcar and sigmoid their own sigma'(u)."""
    sizes = SIZES[:2]
    spec = NetworkSpec(n_inputs=N_IN, layers=tuple(DenseLayerSpec(n) for n in sizes), n_classes=N_CLASSES,
                       learning=LearningSpec(loss=loss, surrogate=surrogate, optimizer="sgd", lr=3e-2, dropout=0.5,
                                             burnin=BURNIN))
    sim = Simulator(spec, T_SMALL, device="runtime", probes=("u", "s"))
    params = make_params(spec)
    counts, label = make_input()[:T_SMALL], 1
    inputs, _ = pack_chunk([(counts, label)], T_SMALL, N_CLASSES, lr=spec.learning.lr, burnin=BURNIN, learn=True,
                           dropout=0.5, layer_sizes=list(sizes), rng=np.random.default_rng(3))
    out = sim.run_chunk(inputs, params)
    layers = [ref.DenseLayer(params[f"layer{k}.W"].copy(), params[f"layer{k}.b"].copy(), params[f"layer{k}.G"].copy(),
                             params[f"layer{k}.g"].copy()) for k in (1, 2)]
    expected = ref.run_sample(layers, counts, label, n_classes=N_CLASSES, burnin=BURNIN, learn=True, loss=loss,
                              surrogate=surrogate, **ORACLE_SURROGATE_PARAMS[surrogate], optimizer="sgd",
                              lr=spec.learning.lr, masks=inputs.masks)
    for k in range(len(sizes)):
        spikes = out.probes[k]["s"]
        assert spikes.sum() > 0.02 * spikes.size, f"layer {k + 1} barely fires: test would be weak"
        np.testing.assert_array_equal(spikes, expected["spikes"][k], err_msg=f"spikes of layer {k + 1}")
        np.testing.assert_allclose(out.probes[k]["u"], expected["u"][k], rtol=0, atol=1e-9)
        np.testing.assert_allclose(out.y[k], expected["y"][k], rtol=0, atol=1e-9)
    assert_params_close(out, layers, params)
