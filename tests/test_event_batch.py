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

from decolle_brian import reference as ref
from decolle_brian.devices import Simulator
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
    n_layers, n_batch, n_steps = len(SIZES), counts.shape[0], counts.shape[1]
    W = [params[f"layer{k}.W"].copy() for k in range(1, n_layers + 1)]
    bias = [params[f"layer{k}.b"].copy() for k in range(1, n_layers + 1)]
    G = [params[f"layer{k}.G"] for k in range(1, n_layers + 1)]
    g = [params[f"layer{k}.g"] for k in range(1, n_layers + 1)]
    q = [np.zeros((n_batch, w.shape[1])) for w in W]
    p = [np.zeros((n_batch, w.shape[1])) for w in W]
    q_syn, u_syn, r, s_prev = ([np.zeros((n_batch, n)) for n in SIZES] for _ in range(4))
    targets = np.eye(N_CLASSES)[list(labels)]
    rec = {"spikes": [np.zeros((n_steps, n_batch, n)) for n in SIZES],
           "u": [np.zeros((n_steps, n_batch, n)) for n in SIZES]}
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


def test_smoke_runtime():
    spec = make_spec()
    sim = Simulator(spec, T, device="runtime", probes=("u", "s"))
    params, counts = make_params(spec), make_counts()
    inputs = pack(counts, LABELS, spec)
    out = sim.run_chunk(inputs, params)
    check_against_model(out, params, inputs, counts, LABELS)
