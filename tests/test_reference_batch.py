"""Tests of the batched NumPy reference (the oracle of minibatches): batch 1 is the online oracle bit for bit,
the batch gradient is the mean of the per-sample gradients (derived rule and finite differences), B identical
samples are batch 1, and (when its Python is given) the published reference's batched step agrees."""

import copy
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from decolle_brian import reference as ref
from decolle_brian.reference import Constants, init_conv_layer, init_layers, loss_value, run_sample
from decolle_brian.reference_batch import batch_gradients, evaluate_batch, run_batch

RECORDS = ("spikes", "spikes_full", "u", "u_full", "y", "loss", "err_signal", "err_full", "p_in")


def dense_net(rng, sizes=(7, 6, 5), n_classes=3, gain=4.0):
    layers = init_layers(list(sizes), n_classes, rng)
    for layer in layers:
        layer.W *= gain
    return layers


def conv_net(rng, n_classes=4):
    conv = init_conv_layer((2, 6, 6), 3, 3, n_classes, rng, padding=1, pool=2)
    conv.K *= 4.0
    dense = init_layers([conv.n_out, 5], n_classes, rng)[0]
    dense.W *= 4.0
    return [conv, dense]


def batch_inputs(rng, layers, n_batch, n_steps, rate=0.6, dropout=0.5, in_shape=None):
    shape = (n_batch, n_steps, *(in_shape or (layers[0].n_in,)))
    counts = rng.poisson(rate, size=shape).astype(float)
    masks = [(rng.random((n_steps, n_batch, layer.n_out)) >= dropout) / (1.0 - dropout) for layer in layers]
    return counts, masks


def params_of(layers):
    return [(layer.K if isinstance(layer, ref.ConvLayer) else layer.W).copy() for layer in layers] + [
        layer.b.copy() for layer in layers]


# ------------------------------------------------------------------------------------------------------
# Batch 1 is the online oracle
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ref.OPTIMIZERS)
@pytest.mark.parametrize("net", ["dense", "conv"])
def test_batch_of_one_is_online_bit_for_bit(optimizer, net):
    rng = np.random.default_rng(1)
    layers = dense_net(rng) if net == "dense" else conv_net(rng)
    in_shape = (2, 6, 6) if net == "conv" else None
    counts, masks = batch_inputs(rng, layers, 1, 14, in_shape=in_shape)
    online, batched = copy.deepcopy(layers), copy.deepcopy(layers)
    kw = dict(n_classes=layers[0].G.shape[0], burnin=3, learn=True, optimizer=optimizer, lr=0.05)
    out_online = run_sample(online, counts[0], 2, masks=[m[:, 0] for m in masks], **kw)
    out_batch = run_batch(batched, counts, [2], masks=masks, **kw)
    for key in RECORDS:
        for a, b in zip(out_online[key], out_batch[key], strict=True):
            np.testing.assert_array_equal(b[:, 0], a, err_msg=key)
    for a, b in zip(params_of(online), params_of(batched), strict=True):
        np.testing.assert_array_equal(b, a)
    assert np.abs(params_of(batched)[0] - params_of(layers)[0]).max() > 0  # it did learn
    for st_a, st_b in zip(out_online["opt_state"], out_batch["opt_state"], strict=True):
        assert st_a.keys() == st_b.keys()
        for key in st_a:
            np.testing.assert_array_equal(st_b[key], st_a[key])


# ------------------------------------------------------------------------------------------------------
# The batch gradient is the batch mean of the per-sample gradients
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("net", ["dense", "conv"])
def test_one_step_is_mean_of_online_gradients(net):
    # Only the last step learns (burnin = T - 1): before it every sample's forward is its online forward with
    # the initial weights, and the one SGD step is -lr times the batch mean of the online gradients E_b P_b.
    rng = np.random.default_rng(2)
    layers = dense_net(rng) if net == "dense" else conv_net(rng)
    in_shape = (2, 6, 6) if net == "conv" else None
    n_batch, n_steps, lr = 3, 12, 0.1
    counts, masks = batch_inputs(rng, layers, n_batch, n_steps, in_shape=in_shape)
    labels = [0, 2, 1]
    kw = dict(n_classes=layers[0].G.shape[0], burnin=n_steps - 1)
    batched = copy.deepcopy(layers)
    out = run_batch(batched, counts, labels, learn=True, optimizer="sgd", lr=lr, masks=masks, **kw)
    online = [run_sample(layers, counts[b], labels[b], masks=[m[:, b] for m in masks], **kw) for b in range(n_batch)]
    t = n_steps - 1
    for b, out_b in enumerate(online):
        for key in ("spikes", "u", "y", "loss", "p_in"):
            for l in range(len(layers)):
                np.testing.assert_array_equal(out[key][l][:, b], out_b[key][l], err_msg=key)
        for l in range(len(layers)):  # the batch signal is the online one over B
            # 1e-12, not 1e-15: (dL/dy / B) through the readout and (dL/dy through it) / B round differently, by
            # a few ulps depending on the machine's numpy kernels (2.3e-15 seen on an AVX-512 machine); a
            # missing or doubled 1/B is a factor of 3 here
            np.testing.assert_allclose(out["err_full"][l][t, b], out_b["err_full"][l][t] / n_batch, rtol=1e-12)
    for l, layer in enumerate(layers):
        if net == "conv" and l == 0:
            per_sample = [ref.conv2d_kernel_grad(o["p_in"][0][t].reshape(layer.in_shape),
                                                 o["err_full"][0][t].reshape(layer.full_shape), 3, 3, 1)
                          for o in online]
            per_sample_b = [o["err_full"][0][t].reshape(layer.full_shape).sum(axis=(1, 2)) for o in online]
            before, after = layer.K, batched[l].K
        else:
            per_sample = [np.outer(o["err_full"][l][t], o["p_in"][l][t]) for o in online]
            per_sample_b = [o["err_full"][l][t] for o in online]
            before, after = layer.W, batched[l].W
        mean_grad = np.mean(per_sample, axis=0)
        assert np.abs(mean_grad).max() > 1e-5
        np.testing.assert_allclose(after, before - lr * mean_grad, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(batched[l].b, layer.b - lr * np.mean(per_sample_b, axis=0), rtol=1e-12, atol=1e-15)
    assert np.allclose(out["batch_loss"][0], out["loss"][0].mean(axis=1), equal_nan=True)


def surrogate_forward(u, surrogate, slope):
    if surrogate == "fast_sigmoid":
        return u / (slope * np.abs(u) + 1.0)
    if surrogate == "sigmoid":
        return 1.0 / (1.0 + np.exp(-slope * u))
    return np.clip(u, -0.5, 0.5)


@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "sigmoid"])
@pytest.mark.parametrize("loss", ref.LOSSES)
def test_batch_gradient_finite_differences(loss, surrogate):
    # d/dW of (1/B) sum_b loss_b, the spike replaced by a smooth function with derivative sigma' and anchored at the
    # real readout of each sample, equals batch_gradients(E, P) of the recorded signals.
    rng = np.random.default_rng(3)
    layer = dense_net(rng, sizes=(5, 4), gain=5.0)[0]
    n_batch, n_steps, t = 3, 10, 9
    counts, masks = batch_inputs(rng, [layer], n_batch, n_steps, dropout=0.3)
    labels = [1, 0, 2]
    out = run_batch([layer], counts, labels, n_classes=3, loss=loss, surrogate=surrogate, slope=2.0, masks=masks)
    p, u0, y0 = out["p_in"][0][t], out["u"][0][t], out["y"][0][t]
    r = u0 - p @ layer.W.T - layer.b

    def mean_loss(W, b):
        total = 0.0
        for k in range(n_batch):
            s = surrogate_forward(W @ p[k] + b + r[k], surrogate, 2.0)
            s_ref = surrogate_forward(u0[k], surrogate, 2.0)
            y = y0[k] + layer.G @ (masks[0][t, k] * (s - s_ref))
            total += loss_value(y, np.eye(3)[labels[k]], loss)
        return total / n_batch

    h = 1e-6
    fd_w = np.zeros_like(layer.W)
    for idx in np.ndindex(layer.W.shape):
        dw = np.zeros_like(layer.W)
        dw[idx] = h
        fd_w[idx] = (mean_loss(layer.W + dw, layer.b) - mean_loss(layer.W - dw, layer.b)) / (2 * h)
    fd_b = np.array([(mean_loss(layer.W, layer.b + h * e) - mean_loss(layer.W, layer.b - h * e)) / (2 * h)
                     for e in np.eye(4)])
    grad, grad_b = batch_gradients(layer, p, out["err_full"][0][t])
    assert np.abs(grad).max() > 1e-5
    np.testing.assert_allclose(grad, fd_w, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(grad_b, fd_b, rtol=1e-5, atol=1e-10)


# ------------------------------------------------------------------------------------------------------
# B identical samples are batch 1
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ref.OPTIMIZERS)
@pytest.mark.parametrize("n_batch", [2, 3])
def test_identical_samples_are_batch_of_one(optimizer, n_batch):
    # The mean of B equal gradients is that gradient: B = 2 bit for bit (x/2 + x/2 and the sum are exact in binary),
    # B = 3 within rounding; learning at every step after burn-in, weights feeding back into the forward.
    rng = np.random.default_rng(4)
    layers = dense_net(rng)
    counts, masks = batch_inputs(rng, layers, 1, 25)
    one, many = copy.deepcopy(layers), copy.deepcopy(layers)
    kw = dict(n_classes=3, burnin=2, learn=True, optimizer=optimizer, lr=0.05)
    out_one = run_batch(one, counts, [1], masks=masks, **kw)
    out_many = run_batch(many, np.repeat(counts, n_batch, axis=0), [1] * n_batch,
                         masks=[np.repeat(m, n_batch, axis=1) for m in masks], **kw)
    for l in range(len(layers)):
        for b in range(n_batch):
            np.testing.assert_array_equal(out_many["spikes"][l][:, b], out_one["spikes"][l][:, 0])
            np.testing.assert_allclose(out_many["u"][l][:, b], out_one["u"][l][:, 0], rtol=1e-12, atol=1e-14)
    exact = n_batch == 2
    for a, b in zip(params_of(one), params_of(many), strict=True):
        if exact:
            np.testing.assert_array_equal(b, a)
        else:
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
    assert np.abs(params_of(one)[0] - params_of(layers)[0]).max() > 0


def test_batch_differs_from_sequential_online():
    # Batching is not online learning: two samples side by side with one mean step per time step end with other
    # weights than the two samples one after the other (the test would pass vacuously if run_batch ignored B).
    rng = np.random.default_rng(5)
    layers = dense_net(rng)
    counts, masks = batch_inputs(rng, layers, 2, 15)
    batched, sequential = copy.deepcopy(layers), copy.deepcopy(layers)
    run_batch(batched, counts, [0, 2], n_classes=3, learn=True, lr=0.05, masks=masks)
    for b, label in enumerate([0, 2]):
        run_sample(sequential, counts[b], label, n_classes=3, learn=True, lr=0.05, masks=[m[:, b] for m in masks])
    assert np.abs(batched[0].W - sequential[0].W).max() > 1e-6


# ------------------------------------------------------------------------------------------------------
# Evaluation in batches, errors
# ------------------------------------------------------------------------------------------------------


def test_evaluate_batch_equals_evaluate():
    rng = np.random.default_rng(6)
    layers = dense_net(rng)
    samples = [rng.poisson(0.6, size=(12, 7)).astype(float) for _ in range(7)]
    labels = rng.integers(0, 3, size=7)
    expected = ref.evaluate(layers, samples, labels, n_classes=3, burnin=4)
    for batch_size in (1, 3, 7):
        np.testing.assert_array_equal(evaluate_batch(layers, samples, labels, batch_size, n_classes=3, burnin=4),
                                      expected)
    with pytest.raises(ValueError, match="learn"):
        evaluate_batch(layers, samples, labels, 2, n_classes=3, learn=True)


def test_errors():
    rng = np.random.default_rng(7)
    layers = dense_net(rng)
    counts, masks = batch_inputs(rng, layers, 2, 5)
    with pytest.raises(ValueError, match="needs labels"):
        run_batch(layers, counts, None, n_classes=3, learn=True)
    with pytest.raises(ValueError, match="1 labels for a batch of 2"):
        run_batch(layers, counts, [0], n_classes=3)
    with pytest.raises(ValueError, match="out of range"):
        run_batch(layers, counts, [0, 3], n_classes=3)
    with pytest.raises(ValueError, match="mask 0 has shape"):
        run_batch(layers, counts, [0, 1], n_classes=3, masks=[m[:, :1] for m in masks])
    with pytest.raises(ValueError, match=r"\(B, T, inputs"):
        run_batch(layers, counts[0], [0, 1], n_classes=3)
    with pytest.raises(ValueError, match="inputs per step"):
        run_batch(layers, counts[:, :, :3], [0, 1], n_classes=3)
    with pytest.raises(ValueError, match="unknown optimizer"):
        run_batch(layers, counts, [0, 1], n_classes=3, optimizer="adam")
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_batch(layers, list(counts), [0, 1], 0, n_classes=3)


# ------------------------------------------------------------------------------------------------------
# Against the published reference's batched step (its own Python; skipped without it)
# ------------------------------------------------------------------------------------------------------

REFERENCE_PYTHON = os.environ.get("DECOLLE_REFERENCE_PYTHON", "")


@pytest.mark.slow
@pytest.mark.skipif(not REFERENCE_PYTHON, reason="DECOLLE_REFERENCE_PYTHON (a Python with decolle 0.2 and torch, "
                    "never a dependency) is not set")
@pytest.mark.parametrize("optimizer", ref.OPTIMIZERS)
def test_agrees_with_published_reference_batch(optimizer, tmp_path):
    rng = np.random.default_rng(8)
    consts = Constants()
    layers = init_layers([20, 8, 6], 4, rng)
    for layer in layers:
        layer.W *= 3.0
    n_batch, n_steps, burnin, lr = 4, 40, 5, 0.01
    counts, masks = batch_inputs(rng, layers, n_batch, n_steps, rate=0.3)
    labels = np.array([0, 3, 1, 3])
    data = {"counts": counts, "labels": labels, "consts": [consts.alpha, consts.beta, consts.alpharp, consts.wrp],
            "settings": [burnin, lr, float(optimizer == "adamax")]}
    for l, layer in enumerate(layers):
        data.update({f"W{l}": layer.W, f"b{l}": layer.b, f"G{l}": layer.G, f"g{l}": layer.g, f"masks{l}": masks[l]})
    np.savez(tmp_path / "in.npz", **data)
    driver = Path(__file__).with_name("reference_batch_driver.py")
    done = subprocess.run([REFERENCE_PYTHON, str(driver), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz", allow_pickle=False)
    out = run_batch(layers, counts, labels, n_classes=4, consts=consts, burnin=burnin, learn=True,
                    optimizer=optimizer, lr=lr, masks=masks)
    for l, layer in enumerate(layers):
        assert out["spikes"][l].sum() > 0
        np.testing.assert_array_equal(out["spikes"][l], theirs[f"spikes{l}"])
        np.testing.assert_allclose(out["u"][l], theirs[f"u{l}"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(layer.W, theirs[f"W{l}"], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(layer.b, theirs[f"b{l}"], rtol=1e-6, atol=1e-12)
        if optimizer == "adamax":
            np.testing.assert_allclose(out["opt_state"][l]["W"], theirs[f"uW{l}"], rtol=1e-6, atol=1e-12)
            np.testing.assert_allclose(out["opt_state"][l]["b"], theirs[f"ub{l}"], rtol=1e-6, atol=1e-12)
