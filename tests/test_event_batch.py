"""Mode "event" with batches (``network.mode = "event"``, ``training.batch_size = 4``, SGD): the compiled network
equals a NumPy model of the batched event semantics (docs/event_driven.md, "Batches").

The model, written here from the equations alone: B samples side by side, each with its own traces, forward
filters and dropout masks; one weight matrix W shared by all; a presynaptic event of sample b of count c adds
(1 - beta) c W_ij (the weight in use now, after every step before) to sample b's copy of neuron i's Q filter; the
learning step after every step is the SGD step of the batch-mean loss, W -= lr sum_b E_bi P_bj (E_b carries
the 1/B of the mean), b -= lr sum_b E_bi. The network does this lazily (per-sample coefficients and
accumulators, one stored weight, flushes); it must equal the model: spikes identical, U within 1e-9, W and b
within 1e-6 relative of their change, on the runtime device and on C++ standalone (one small compile).

Frames are short here (alpha 0.8, beta 0.7: K = 39 steps, T = 100), so every sample crosses two flushes inside it.
"""

from dataclasses import replace

import numpy as np
import pytest
from samples import ListSamples, assert_stop_then_resume_is_exact

from decolle_brian import reference as ref
from decolle_brian.config import ConfigError, resolve
from decolle_brian.derivation import DerivationError, derive
from decolle_brian.devices import Simulator
from decolle_brian.emission import dense_code, event_batch_code, event_code
from decolle_brian.errors import SpecError
from decolle_brian.network import event
from decolle_brian.network.batch import from_units, pack_batch
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec, NeuronParams

B, T, BURNIN, N_IN, SIZES, N_CLASSES = 4, 100, 10, 16, (12, 8), 4
LABELS = [2, 0, 3, 2]
NEURON = NeuronParams(alpha=0.8, beta=0.7)
LR = 0.05


def make_spec(batch_size: int = B, optimizer: str = "sgd") -> NetworkSpec:
    return NetworkSpec(n_inputs=N_IN, layers=tuple(DenseLayerSpec(n) for n in SIZES), n_classes=N_CLASSES,
                       neuron=NEURON, mode="event", batch_size=batch_size,
                       learning=LearningSpec(optimizer=optimizer, lr=LR, dropout=0.5, burnin=BURNIN))


def make_params(spec, seed=1):
    params = init_params(spec, np.random.default_rng(seed))
    for k in range(1, len(SIZES) + 1):
        params[f"layer{k}.W"] *= 3.0  # strong enough that every layer fires
    return params


def make_counts(seed=2, n=B):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.2, (n, T, N_IN)).astype(float)
    counts[rng.random((n, T, N_IN)) < 0.02] += 2  # some counts > 1
    return counts


def batched_event_model(params, counts, labels, masks, *, lr, burnin, neuron=NEURON):
    """NumPy model of the batched event semantics; counts (B, T, n_in), masks per layer (T, B, n)."""
    alpha, beta, alpharp, wrp = neuron.alpha, neuron.beta, neuron.alpharp, neuron.wrp
    n_layers = sum(1 for key in params if key.endswith(".W"))
    n_batch, n_steps = counts.shape[0], counts.shape[1]
    W = [params[f"layer{k}.W"].copy() for k in range(1, n_layers + 1)]
    bias = [params[f"layer{k}.b"].copy() for k in range(1, n_layers + 1)]
    G = [params[f"layer{k}.G"] for k in range(1, n_layers + 1)]
    g = [params[f"layer{k}.g"] for k in range(1, n_layers + 1)]
    q = [np.zeros((n_batch, w.shape[1])) for w in W]
    p = [np.zeros((n_batch, w.shape[1])) for w in W]
    sizes = [w.shape[0] for w in W]
    q_syn, u_syn, r, s_prev = ([np.zeros((n_batch, n)) for n in sizes] for _ in range(4))
    targets = np.eye(G[0].shape[0])[list(labels)]
    rec = {"spikes": [np.zeros((n_steps, n_batch, n)) for n in sizes],
           "u": [np.zeros((n_steps, n_batch, n)) for n in sizes]}
    for t in range(n_steps):
        x, signals = counts[:, t], []
        for k in range(n_layers):
            p[k] = alpha * p[k] + (1 - alpha) * q[k]
            q[k] = beta * q[k] + (1 - beta) * x
            u_syn[k] = alpha * u_syn[k] + (1 - alpha) * q_syn[k]
            q_syn[k] = beta * q_syn[k]
            r[k] = alpharp * r[k] - (1 - alpharp) * wrp * s_prev[k]
            u = u_syn[k] + bias[k] + r[k]
            s = (u > 0).astype(float)
            q_syn[k] += (1 - beta) * x @ W[k].T  # every sample's events through the one weight in use now
            y = (masks[k][t] * s) @ G[k].T + g[k]
            dy = np.stack([ref.loss_grad(y[b], targets[b]) for b in range(n_batch)]) / n_batch  # batch mean
            e = ref.surrogate_grad(u) * (dy @ G[k]) * masks[k][t]
            signals.append(e if t >= burnin else np.zeros_like(e))
            rec["spikes"][k][t], rec["u"][k][t], s_prev[k], x = s, u, s, s
        for k in range(n_layers):
            W[k] -= lr * signals[k].T @ p[k]
            bias[k] -= lr * signals[k].sum(axis=0)
    rec["W"], rec["b"] = W, bias
    return rec


def pack(counts, labels, spec, seed=5, learn=True):
    return pack_batch([(counts[b], labels[b]) for b in range(len(labels))], T, N_CLASSES, lr=spec.learning.lr,
                      burnin=BURNIN, learn=learn, dropout=spec.learning.dropout, layer_sizes=list(SIZES),
                      rng=np.random.default_rng(seed))


def check_against_model(out, params, inputs, counts, labels, batch=B):
    masks = [from_units(m, batch) for m in inputs.masks]
    expected = batched_event_model(params, counts, labels, masks, lr=LR, burnin=BURNIN)
    for k in range(len(SIZES)):
        spikes = from_units(out.probes[k]["s"], batch)
        assert 0.02 * spikes.size < spikes.sum() < 0.8 * spikes.size, f"layer {k + 1}: test would be weak"
        np.testing.assert_array_equal(spikes, expected["spikes"][k], err_msg=f"spikes of layer {k + 1}")
        np.testing.assert_allclose(from_units(out.probes[k]["u"], batch), expected["u"][k], rtol=0, atol=1e-9,
                                   err_msg=f"U of layer {k + 1}")
    for k in range(1, len(SIZES) + 1):
        for name, value in (("W", expected["W"][k - 1]), ("b", expected["b"][k - 1])):
            change = np.abs(value - params[f"layer{k}.{name}"]).max()
            assert change > 1e-4, f"layer{k}.{name} barely learns: test would be weak"
            np.testing.assert_allclose(out.params[f"layer{k}.{name}"], value, rtol=0, atol=1e-6 * change,
                                       err_msg=f"layer{k}.{name}")
    return expected


def test_model_at_batch_one_is_the_online_event_model():
    """The model above with B = 1 is the online event semantics of tests/test_event_driven.py, which the online
    event network equals (so the batch model is its generalisation, not another semantics)."""
    import test_equivalence as eq  # noqa: PLC0415
    from test_event_driven import event_semantics  # noqa: PLC0415

    spec = replace(eq.make_spec("sgd"), mode="event")
    params, counts = eq.make_params(spec), eq.make_input()
    masks = [(np.random.default_rng(5).random((eq.T, n)) >= 0.5) / 0.5 for n in eq.SIZES]
    online = event_semantics(params, counts, masks, lr=spec.learning.lr, optimizer="sgd")
    batched = batched_event_model(params, counts[None], [2], [m[:, None] for m in masks], lr=spec.learning.lr,
                                  burnin=eq.BURNIN, neuron=NeuronParams())
    for k in range(len(eq.SIZES)):
        np.testing.assert_array_equal(batched["spikes"][k][:, 0], online["spikes"][k])
        np.testing.assert_allclose(batched["u"][k][:, 0], online["u"][k], rtol=0, atol=1e-12)
        np.testing.assert_allclose(batched["W"][k], online["W"][k], rtol=0, atol=1e-12)
        np.testing.assert_allclose(batched["b"][k], online["b"][k], rtol=0, atol=1e-12)


def test_model_is_not_batch_sequential():
    """The model's samples share the weights at every step (the test can fail): it differs from running the same
    four samples one after the other, each with a quarter of the step."""
    spec = make_spec()
    params, counts = make_params(spec), make_counts()
    masks = [np.ones((T, B, n)) for n in SIZES]
    together = batched_event_model(params, counts, LABELS, masks, lr=LR, burnin=BURNIN)
    one_by_one = dict(params)
    for b in range(B):
        rec = batched_event_model(one_by_one, counts[b:b + 1], LABELS[b:b + 1], [m[:, b:b + 1] for m in masks],
                                  lr=LR / B, burnin=BURNIN)
        one_by_one = {**one_by_one, **{f"layer{k}.{n}": rec[n][k - 1] for k in range(1, len(SIZES) + 1)
                                       for n in ("W", "b")}}
    change = np.abs(together["W"][0] - params["layer1.W"]).max()
    assert np.abs(one_by_one["layer1.W"] - together["W"][0]).max() > 1e-3 * change


# ---- the compiled network against the model ----------------------------------------------------------------------
@pytest.fixture(scope="module", params=["runtime", pytest.param("cpp_standalone", marks=pytest.mark.standalone)])
def device(request):
    return request.param


@pytest.fixture(scope="module")
def sim_b4(device, tmp_path_factory):
    folder = tmp_path_factory.mktemp("event_batch") if device != "runtime" else None
    return Simulator(make_spec(), T, device=device, build_dir=folder, probes=("u", "s"))


def test_batch_of_four_equals_the_batched_event_model(sim_b4, device):
    spec = make_spec()
    params, counts = make_params(spec), make_counts()
    inputs = pack(counts, LABELS, spec)
    schedule = event.frame_schedule(inputs.new_sample, inputs.eta, event.frame_length(NEURON))
    assert np.count_nonzero(schedule["flush_step"][:T - 1]) >= 2, "no flush inside the sample: test would be weak"
    masks = from_units(inputs.masks[0], B)
    assert not np.array_equal(masks[:, 0], masks[:, 1])  # dropout masks per sample
    out = sim_b4.run_chunk(inputs, params)
    expected = check_against_model(out, params, inputs, counts, LABELS)
    assert not np.array_equal(expected["spikes"][0][:, 0], expected["spikes"][0][:, 1])  # the samples differ
    if device == "cpp_standalone":  # the shared weight's rows run as this package's dense rows
        code = sim_b4.build_dir / "code_objects"
        for name in ("forward1_pre", "forward2_pre", "forward1_flush"):
            assert "_row_pre" in (code / f"{name}_codeobject.cpp").read_text(), name


def test_second_batch_continues_from_the_first(sim_b4):
    """Two runs of the same network: state and frames restart, only the shared weights carry over."""
    spec = make_spec()
    params, counts = make_params(spec), make_counts(seed=3, n=2 * B)
    labels = [1, 3, 0, 2, 2, 1, 0, 3]
    first = pack(counts[:B], labels[:B], spec, seed=8)
    out1 = sim_b4.run_chunk(first, params)
    second = pack(counts[B:], labels[B:], spec, seed=9)
    out2 = sim_b4.run_chunk(second, out1.params)
    rec1 = batched_event_model(params, counts[:B], labels[:B], [from_units(m, B) for m in first.masks], lr=LR,
                               burnin=BURNIN)
    after = {**params, **{f"layer{k}.{n}": rec1[n][k - 1] for k in range(1, len(SIZES) + 1) for n in ("W", "b")}}
    check_against_model(out2, after, second, counts[B:], labels[B:])


# ---- batch 1: the online event network -------------------------------------------------------------------------
def test_batch_one_is_the_online_event_network():
    """batch_size = 1 builds the online event mode unchanged: same build key, same derived code, no columns; its
    run equals the batch model at B = 1."""
    online = make_spec(batch_size=1)
    assert online.structure_key() == NetworkSpec(
        n_inputs=N_IN, layers=online.layers, n_classes=N_CLASSES, neuron=NEURON, mode="event",
        learning=online.learning).structure_key()
    rule = derive()
    assert dense_code(rule, "sgd", mode="event", batch_size=1) == event_code(rule, "sgd")
    sim = Simulator(online, T, device="runtime", probes=("u", "s"))
    assert not [obj.name for obj in sim.net.all_objects() if "columns" in obj.name]
    params, counts = make_params(online), make_counts(n=1)
    inputs = pack(counts, LABELS[:1], online)
    check_against_model(sim.run_chunk(inputs, params), params, inputs, counts, LABELS[:1], batch=1)


# ---- Adamax: refused, with the reason, before anything compiles -----------------------------------------------------
def test_adamax_batches_in_event_mode_are_refused_before_anything_compiles(tmp_path):
    spec = make_spec(optimizer="adamax")
    with pytest.raises(SpecError, match=r"network.batch_size: .*need learning.optimizer = 'sgd'.*cannot be lazy.*"
                                        r"Use learning.optimizer = 'sgd', mode 'exact'.*or batch_size = 1"):
        Simulator(spec, T, device="cpp_standalone", build_dir=tmp_path / "build")
    assert not (tmp_path / "build").exists()
    with pytest.raises(ConfigError, match=r"training.batch_size.*learning.optimizer = 'adamax'.*cannot be lazy.*"
                                          r"use learning.optimizer = 'sgd' or network.mode = 'exact'"):
        resolve({"network": {"mode": "event"}, "learning": {"optimizer": "adamax"}, "training": {"batch_size": 4}})
    with pytest.raises(DerivationError, match="needs a linear optimiser"):
        event_batch_code(derive(), "adamax", B)
    make_spec(batch_size=1, optimizer="adamax").validate()  # batch 1: Adamax once per sample, as before


# ---- the training loop ----------------------------------------------------------------------------------------------
T_LOOP = 40


class _Recorder:
    """A Simulator that keeps the inputs of every run (the masks the training loop drew), whatever draws them."""

    def __init__(self, sim):
        self.sim, self.runs = sim, []

    def __getattr__(self, name):
        return getattr(self.sim, name)

    def run_chunk(self, inputs, params, neuron=None, *, on_start=None):
        self.runs.append(inputs)
        return self.sim.run_chunk(inputs, params, neuron, on_start=on_start)


def loop_data(seed=3, n=2 * B + 1):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.25, (n, T_LOOP, N_IN)).astype(float)
    return ListSamples(counts, rng.integers(0, N_CLASSES, n)), counts


def test_training_loop_runs_event_batches_runtime():
    """iter_chunks of a batched event network: each batch of B samples is one run, equal to the model on the run's
    own masks; the last partial batch waits for the next epoch; evaluation runs in batches."""
    from decolle_brian.training import evaluate_dataset, iter_chunks  # noqa: PLC0415 - tqdm only here

    spec = make_spec()
    sim = _Recorder(Simulator(spec, T_LOOP, device="runtime"))
    params = make_params(spec)
    data, counts = loop_data()
    order = np.random.default_rng(7).permutation(len(data))
    steps = list(iter_chunks(sim, data, order, params, learn=True, lr=LR, rng=np.random.default_rng(9)))
    assert [done for done, _, _ in steps] == [B, 2 * B]
    expected = dict(params)
    for run, start in zip(sim.runs, (0, B), strict=True):
        batch = order[start:start + B]
        rec = batched_event_model(expected, counts[batch], [data[i][1] for i in batch],
                                  [from_units(m, B) for m in run.masks], lr=LR, burnin=BURNIN)
        expected = {**expected, **{f"layer{k}.{n}": rec[n][k - 1] for k in range(1, len(SIZES) + 1)
                                   for n in ("W", "b")}}
    trained = steps[-1][1]
    for k in range(1, len(SIZES) + 1):
        change = np.abs(expected[f"layer{k}.W"] - params[f"layer{k}.W"]).max()
        assert change > 1e-4
        np.testing.assert_allclose(trained[f"layer{k}.W"], expected[f"layer{k}.W"], rtol=0, atol=1e-6 * change)
    test, _ = loop_data(seed=4, n=3)
    evaluation = evaluate_dataset(sim.sim, test, trained)  # 3 samples: one batch filled with an empty sample
    assert len(evaluation.accuracy) == len(SIZES) and all(0 <= a <= 1 for a in evaluation.accuracy)


def test_stop_then_resume_event_batches_is_exact_runtime():
    """Stopped after the first batch of the epoch and resumed: the parameters equal the uninterrupted run's bit
    for bit (the second batch's masks come from the run's generator, carried over)."""
    from decolle_brian.loop import TrainingLoop, TrainingState  # noqa: PLC0415

    spec = make_spec()
    sim = Simulator(spec, T_LOOP, device="runtime")
    train, _ = loop_data()
    test, _ = loop_data(seed=4, n=3)

    def loop(state=None, generator=None, params=None):
        return TrainingLoop(sim, train, test, params if params is not None else make_params(spec),
                            generator if generator is not None else np.random.default_rng(11),
                            state or TrainingState(), epochs=1, lr_schedule=lambda epoch: LR, eval_every=1)

    assert_stop_then_resume_is_exact(loop, B, 2 * B, make_params(spec)["layer1.W"])
