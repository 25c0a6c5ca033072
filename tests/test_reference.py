"""Tests of the NumPy reference (the oracle): every equation line against hand-computed numbers, every
derivative against finite differences, and the conv layer against explicit loops."""

import numpy as np
import pytest

from decolle_brian import reference as ref
from decolle_brian.reference import (
    Constants,
    ConvLayer,
    DenseLayer,
    conv2d,
    conv2d_kernel_grad,
    evaluate,
    init_conv_layer,
    init_layers,
    loss_grad,
    loss_value,
    majority_vote,
    maxpool,
    maxpool_route,
    optimizer_step,
    run_sample,
    surrogate_grad,
)

EPS = 1e-8


# ------------------------------------------------------------------------------------------------------
# Helpers written independently of the module (loops, scalars)
# ------------------------------------------------------------------------------------------------------


def loop_conv(x, K, padding):
    """Explicit-loop stride-1 cross-correlation with zero padding."""
    c_in, h, w = x.shape
    c_out, _, kh, kw = K.shape
    xp = np.zeros((c_in, h + 2 * padding, w + 2 * padding))
    xp[:, padding : padding + h, padding : padding + w] = x
    ho, wo = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    out = np.zeros((c_out, ho, wo))
    for o in range(c_out):
        for i in range(ho):
            for j in range(wo):
                acc = 0.0
                for c in range(c_in):
                    for a in range(kh):
                        for e in range(kw):
                            acc += K[o, c, a, e] * xp[c, i + a, j + e]
                out[o, i, j] = acc
    return out


def loop_pool(u, pool):
    c, h, w = u.shape
    out = np.zeros((c, h // pool, w // pool))
    for o in range(c):
        for i in range(h // pool):
            for j in range(w // pool):
                out[o, i, j] = u[o, i * pool : (i + 1) * pool, j * pool : (j + 1) * pool].max()
    return out


def trace_recurrence(s_in, consts=None):
    """P[t] from input counts by the scalar recurrences (test-side copy of the two equation lines)."""
    consts = consts or Constants()
    n_steps, n = s_in.shape
    q = np.zeros(n)
    p = np.zeros(n)
    out = np.zeros((n_steps, n))
    for t in range(n_steps):
        p = consts.alpha * p + (1 - consts.alpha) * q
        q = consts.beta * q + (1 - consts.beta) * s_in[t]
        out[t] = p
    return out


def refractory_recurrence(s, consts=None):
    consts = consts or Constants()
    n_steps, n = s.shape
    r = np.zeros(n)
    out = np.zeros((n_steps, n))
    prev = np.zeros(n)
    for t in range(n_steps):
        r = consts.alpharp * r - (1 - consts.alpharp) * consts.wrp * prev
        out[t] = r
        prev = s[t]
    return out


# Smooth stand-ins whose derivative IS the surrogate: used to check E * P by finite differences.
def surrogate_forward(u, surrogate, slope=10.0, width=1.0):
    if surrogate == "fast_sigmoid":
        return u / (slope * np.abs(u) + 1.0)
    if surrogate == "sigmoid":
        return 1.0 / (1.0 + np.exp(-slope * u))
    if surrogate == "boxcar":
        return np.clip(u, -width / 2, width / 2)
    raise ValueError(surrogate)


def one_by_one_layer(w=100.0, b=-0.5):
    return DenseLayer(W=np.array([[w]]), b=np.array([b]), G=np.array([[0.5], [-0.3]]), g=np.array([0.1, 0.2]))


COUNTS_1 = np.array([[1.0], [2.0], [0.0], [0.0], [0.0]])
# Hand-computed (alpha .97, beta .92, alpharp .65, wrp 1; W = 100, b = -0.5):
#   Q = .08, .2336, .214912, .19771904, ...
#   P = 0, .03*.08, .97*.0024 + .03*.2336, .97*.009336 + .03*.214912, .97*.01550328 + .03*.19771904
P_HAND = np.array([0.0, 0.0024, 0.009336, 0.01550328, 0.0209697528])
#   R = 0, 0, 0, -.35 (S[2] = 1), .65*(-.35) - .35 (S[3] = 1)
R_HAND = np.array([0.0, 0.0, 0.0, -0.35, -0.5775])
U_HAND = np.array([-0.5, -0.26, 0.4336, 0.700328, 1.01947528])
S_HAND = np.array([0, 0, 1, 1, 1])


# ------------------------------------------------------------------------------------------------------
# Forward equations by hand
# ------------------------------------------------------------------------------------------------------


def test_hand_example_forward():
    out = run_sample([one_by_one_layer()], COUNTS_1, None, n_classes=2)
    np.testing.assert_allclose(out["p_in"][0][:, 0], P_HAND, rtol=0, atol=1e-14)
    np.testing.assert_allclose(out["u"][0][:, 0], U_HAND, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out["spikes"][0][:, 0], S_HAND)
    np.testing.assert_allclose(out["u"][0][:, 0] - 100.0 * P_HAND + 0.5, R_HAND, atol=1e-12)
    # Readout: y = G S + g.
    y_hand = np.where(S_HAND[:, None] == 1, [0.6, -0.1], [0.1, 0.2])
    np.testing.assert_allclose(out["y"][0], y_hand, atol=1e-15)
    # No label: no loss, no learning signal.
    assert np.all(np.isnan(out["loss"][0]))
    assert not out["err_signal"][0].any()


def test_one_step_delay_of_p():
    counts = np.zeros((4, 1))
    counts[0] = 1.0
    out = run_sample([one_by_one_layer()], counts, None, n_classes=2)
    p = out["p_in"][0][:, 0]
    assert p[0] == 0.0  # Q[0] = .08 but P[0] uses Q[-1] = 0
    assert p[1] == pytest.approx(0.03 * 0.08, abs=1e-16)
    assert p[2] == pytest.approx(0.97 * 0.03 * 0.08 + 0.03 * 0.92 * 0.08, abs=1e-16)


def test_counts_above_one_scale_linearly():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 2, size=(30, 6)).astype(float)
    layer = init_layers([6, 3], 2, rng)[0]
    p1 = run_sample([layer], counts, None, n_classes=2)["p_in"][0]
    p3 = run_sample([layer], 3 * counts, None, n_classes=2)["p_in"][0]
    np.testing.assert_allclose(p3, 3 * p1, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(p1, trace_recurrence(counts), rtol=0, atol=1e-15)


@pytest.mark.parametrize("consts", [Constants(), Constants(alpha=0.9, beta=0.8, alpharp=0.5, wrp=2.0)])
def test_refractory_and_membrane_equations(consts):
    rng = np.random.default_rng(1)
    counts = rng.poisson(0.5, size=(40, 8)).astype(float)
    layer = init_layers([8, 5], 3, rng)[0]
    layer.W *= 8.0  # make it spike
    out = run_sample([layer], counts, None, n_classes=3, consts=consts)
    p = trace_recurrence(counts, consts)
    np.testing.assert_allclose(out["p_in"][0], p, atol=1e-14)
    s = out["spikes"][0]
    assert 0 < s.mean() < 1
    r = refractory_recurrence(s, consts)
    np.testing.assert_allclose(out["u"][0], p @ layer.W.T + layer.b + r, atol=1e-12)
    np.testing.assert_array_equal(s, (out["u"][0] > 0).astype(int))


def test_next_layer_gets_same_step_undropped_spikes():
    rng = np.random.default_rng(2)
    counts = rng.poisson(0.4, size=(50, 10)).astype(float)
    layers = init_layers([10, 8, 6], 3, rng)
    for layer in layers:
        layer.W *= 6.0
    masks = [(rng.random((50, 8)) < 0.5) * 2.0, (rng.random((50, 6)) < 0.5) * 2.0]
    out = run_sample(layers, counts, 1, n_classes=3, masks=masks)
    s1 = out["spikes"][0]
    assert s1.any()
    np.testing.assert_allclose(out["p_in"][1], trace_recurrence(s1.astype(float)), atol=1e-14)
    out_nomask = run_sample(layers, counts, 1, n_classes=3)
    for key in ("spikes", "u", "p_in"):
        for a, b in zip(out[key], out_nomask[key], strict=True):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------------
# Readout, losses, surrogates, learning signal
# ------------------------------------------------------------------------------------------------------


def test_hand_example_loss_and_signal():
    out = run_sample([one_by_one_layer()], COUNTS_1, 0, n_classes=2)
    # S = 0: d = (-.9, .2): smoothl1 = (.405 + .02) / 2;  S = 1: d = (-.4, -.1): (.08 + .005) / 2.
    loss_hand = np.where(S_HAND == 1, 0.0425, 0.2125)
    np.testing.assert_allclose(out["loss"][0], loss_hand, atol=1e-15)
    # G^T dL/dy: S = 0: .5 * (-.45) - .3 * .1 = -.255;  S = 1: .5 * (-.2) - .3 * (-.05) = -.085.
    gdy = np.where(S_HAND == 1, -0.085, -0.255)
    e_hand = gdy / (10 * np.abs(U_HAND) + 1) ** 2
    np.testing.assert_allclose(out["err_signal"][0][:, 0], e_hand, rtol=1e-12)


def test_mask_enters_readout_and_signal():
    rng = np.random.default_rng(3)
    counts = rng.poisson(0.5, size=(20, 6)).astype(float)
    layer = init_layers([6, 4], 3, rng)[0]
    layer.W *= 6
    mask = (rng.random((20, 4)) < 0.5) * 2.0
    out = run_sample(
        [layer], counts, 2, n_classes=3, masks=[mask], loss="mse", surrogate="sigmoid", slope=3.0
    )
    s = out["spikes"][0]
    np.testing.assert_allclose(out["y"][0], (mask * s) @ layer.G.T + layer.g, atol=1e-15)
    target = np.eye(3)[2]
    for t in range(20):
        y = out["y"][0][t]
        e = surrogate_grad(out["u"][0][t], "sigmoid", 3.0) * mask[t] * (layer.G.T @ (2 * (y - target) / 3))
        np.testing.assert_allclose(out["err_signal"][0][t], e, atol=1e-15)
    assert not out["err_signal"][0][mask == 0].any()


@pytest.mark.parametrize("loss", ref.LOSSES)
def test_loss_gradient_finite_differences(loss):
    rng = np.random.default_rng(4)
    h = 1e-6
    for _ in range(5):
        y = rng.normal(0, 1.5, size=5)
        target = np.eye(5)[rng.integers(5)]
        g = loss_grad(y, target, loss)
        fd = np.array(
            [
                (
                    loss_value(y + h * np.eye(5)[k], target, loss)
                    - loss_value(y - h * np.eye(5)[k], target, loss)
                )
                / (2 * h)
                for k in range(5)
            ]
        )
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_loss_values_by_hand():
    y = np.array([0.5, 2.0, -1.0])
    t = np.array([0.0, 1.0, 0.0])
    # d = (.5, 1, -1): smoothl1 terms .125, .5, .5
    assert loss_value(y, t, "smoothl1") == pytest.approx((0.125 + 0.5 + 0.5) / 3)
    assert loss_value(y, t, "mse") == pytest.approx((0.25 + 1 + 1) / 3)
    assert loss_value(y, t, "ce") == pytest.approx(-(2.0 - np.log(np.exp(0.5) + np.exp(2.0) + np.exp(-1.0))))
    np.testing.assert_allclose(loss_grad(np.array([3.0, 0.2]), np.array([1.0, 0.0]), "smoothl1"), [0.5, 0.1])


def test_surrogates_by_hand():
    u = np.array([-0.6, -0.5, 0.0, 0.1, 0.5, 0.51])
    np.testing.assert_allclose(surrogate_grad(u, "fast_sigmoid"), 1 / (10 * np.abs(u) + 1) ** 2)
    assert surrogate_grad(np.array([0.1]), "fast_sigmoid")[0] == pytest.approx(0.25)
    np.testing.assert_array_equal(surrogate_grad(u, "boxcar"), [0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(surrogate_grad(np.array([-1.0, 1.0]), "boxcar", width=2.0), [0, 1])
    assert surrogate_grad(np.array([0.0]), "sigmoid", slope=4.0)[0] == pytest.approx(1.0)
    assert surrogate_grad(np.array([1e4]), "sigmoid")[0] == 0.0  # no overflow
    # default slope 1 (PyTorch DECOLLE's SigmoidStep: sig(u) (1 - sig(u))): 1/4 at u = 0
    assert surrogate_grad(np.array([0.0]), "sigmoid")[0] == pytest.approx(0.25)
    with pytest.raises(ValueError):
        surrogate_grad(u, "nope")


@pytest.mark.parametrize("surrogate", ref.SURROGATES)
def test_surrogate_is_derivative_of_surrogate_forward(surrogate):
    u = np.array([-0.8, -0.3, -0.05, 0.02, 0.2, 0.7])
    h = 1e-6
    fd = (surrogate_forward(u + h, surrogate, 4.0) - surrogate_forward(u - h, surrogate, 4.0)) / (2 * h)
    np.testing.assert_allclose(surrogate_grad(u, surrogate, slope=4.0), fd, rtol=1e-6, atol=1e-9)


def _anchored_loss(y0, target, loss, G, m, s_ref):
    """Loss of the 'surrogate forward' anchored at the real readout y0: y = y0 + G (m (s - s_ref))."""
    return lambda s: loss_value(y0 + G @ (m * (s - s_ref)), target, loss)


@pytest.mark.parametrize("surrogate", ref.SURROGATES)
@pytest.mark.parametrize("loss", ref.LOSSES)
def test_dense_gradient_is_e_times_p(loss, surrogate):
    # dL/dW_ij = E_i P_j where the spike nonlinearity is replaced by a smooth function with derivative sigma'.
    rng = np.random.default_rng(5)
    counts = rng.poisson(0.6, size=(12, 5)).astype(float)
    layer = init_layers([5, 4], 3, rng)[0]
    layer.W *= 5
    mask = (rng.random((12, 4)) < 0.7) * (1 / 0.7)
    out = run_sample([layer], counts, 1, n_classes=3, loss=loss, surrogate=surrogate, slope=2.0, masks=[mask])
    t = 11
    p, u0, y0 = out["p_in"][0][t], out["u"][0][t], out["y"][0][t]
    r = u0 - layer.W @ p - layer.b
    sf = lambda W, b: surrogate_forward(W @ p + b + r, surrogate, 2.0)  # noqa: E731
    f = _anchored_loss(y0, np.eye(3)[1], loss, layer.G, mask[t], sf(layer.W, layer.b))
    h = 1e-6
    fd_w = np.zeros_like(layer.W)
    for i in range(4):
        for j in range(5):
            dw = np.zeros_like(layer.W)
            dw[i, j] = h
            fd_w[i, j] = (f(sf(layer.W + dw, layer.b)) - f(sf(layer.W - dw, layer.b))) / (2 * h)
    fd_b = np.array(
        [
            (f(sf(layer.W, layer.b + h * np.eye(4)[i])) - f(sf(layer.W, layer.b - h * np.eye(4)[i])))
            / (2 * h)
            for i in range(4)
        ]
    )
    e = out["err_signal"][0][t]
    assert np.abs(e).max() > 1e-4
    np.testing.assert_allclose(np.outer(e, p), fd_w, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(e, fd_b, rtol=1e-5, atol=1e-9)


# ------------------------------------------------------------------------------------------------------
# Optimisers, burn-in, timing of the weight step
# ------------------------------------------------------------------------------------------------------


def test_optimizer_steps_by_hand():
    lr = 0.01
    p = np.array([1.0, -2.0])
    optimizer_step(p, np.array([0.5, -4.0]), None, "sgd", lr)
    np.testing.assert_allclose(p, [1.0 - 0.005, -2.0 + 0.04])

    p = np.array([1.0, -2.0])
    u = np.zeros(2)
    optimizer_step(p, np.array([0.5, -1e-3]), u, "adamax", lr, 0.95, EPS)
    np.testing.assert_allclose(u, [0.5 + EPS, 1e-3 + EPS], rtol=1e-15)
    p1 = np.array([1.0 - lr * 0.5 / (0.5 + EPS), -2.0 + lr * 1e-3 / (1e-3 + EPS)])
    np.testing.assert_allclose(p, p1, rtol=1e-15)
    optimizer_step(p, np.array([0.1, 0.2]), u, "adamax", lr, 0.95, EPS)
    u2 = np.array([0.95 * (0.5 + EPS), 0.2 + EPS])  # max(.475, .1 + eps), max(.00095, .2 + eps)
    np.testing.assert_allclose(u, u2, rtol=1e-15)
    np.testing.assert_allclose(p, p1 - lr * np.array([0.1, 0.2]) / u2, rtol=1e-15)


def test_sgd_hand_example_and_burnin():
    # burnin = 2: steps 0, 1 do not learn; the step after t = 2 uses E[2] P[2].
    layer = one_by_one_layer()
    out = run_sample([layer], COUNTS_1[:3], 0, n_classes=2, burnin=2, learn=True, lr=0.1)
    e2 = -0.085 / (10 * 0.4336 + 1) ** 2
    assert not out["err_signal"][0][:2].any()
    assert out["err_signal"][0][2, 0] == pytest.approx(e2, rel=1e-12)
    assert layer.W[0, 0] == pytest.approx(100.0 - 0.1 * e2 * 0.009336, rel=1e-14)
    assert layer.b[0] == pytest.approx(-0.5 - 0.1 * e2, rel=1e-14)
    assert layer.G.tolist() == [[0.5], [-0.3]] and layer.g.tolist() == [0.1, 0.2]  # readout fixed

    layer = one_by_one_layer()
    run_sample([layer], COUNTS_1[:3], 0, n_classes=2, burnin=3, learn=True, lr=0.1)
    assert layer.W[0, 0] == 100.0 and layer.b[0] == -0.5


def test_weight_step_first_acts_on_next_step():
    layer = one_by_one_layer()
    out = run_sample([layer], COUNTS_1[:4], 0, n_classes=2, burnin=2, learn=True, lr=50.0)
    u = out["u"][0][:, 0]
    np.testing.assert_allclose(u[:3], U_HAND[:3], atol=1e-12)  # step 2 still uses the old weights
    w, b = layer.W[0, 0], layer.b[0]
    # Two steps were taken (after t = 2 and t = 3); undo the second to get the weights U[3] saw.
    e3, p3 = out["err_signal"][0][3, 0], P_HAND[3]
    w_seen, b_seen = w + 50.0 * e3 * p3, b + 50.0 * e3
    assert w_seen != 100.0
    assert u[3] == pytest.approx(w_seen * p3 + b_seen + R_HAND[3], abs=1e-12)


def test_adamax_end_to_end_and_state():
    layer = one_by_one_layer()
    lr = 0.01
    out = run_sample([layer], COUNTS_1[:4], 0, n_classes=2, burnin=2, learn=True, lr=lr, optimizer="adamax")
    e, p = out["err_signal"][0][:, 0], out["p_in"][0][:, 0]
    # The signal of step 3 comes from U[3], which the first step changed; take it as recorded.
    g2, g3 = e[2] * p[2], e[3] * p[3]
    u2 = abs(g2) + EPS
    u3 = max(0.95 * u2, abs(g3) + EPS)
    assert layer.W[0, 0] == pytest.approx(100.0 - lr * g2 / u2 - lr * g3 / u3, rel=1e-14)
    np.testing.assert_allclose(out["opt_state"][0]["W"], [[u3]], rtol=1e-14)
    ub = max(0.95 * (abs(e[2]) + EPS), abs(e[3]) + EPS)
    np.testing.assert_allclose(out["opt_state"][0]["b"], [ub], rtol=1e-14)
    # Passing the state on continues it (in place).
    st = out["opt_state"]
    out2 = run_sample(
        [layer], COUNTS_1[:3], 0, n_classes=2, burnin=2, learn=True, lr=lr, optimizer="adamax", opt_state=st
    )
    assert out2["opt_state"] is st
    g = out2["err_signal"][0][2, 0] * out2["p_in"][0][2, 0]
    np.testing.assert_allclose(st[0]["W"], [[max(0.95 * u3, abs(g) + EPS)]], rtol=1e-14)


def test_learning_two_layers_matches_manual_sgd():
    # Re-derive every step of a 2-layer SGD run from the recorded E and P: W_final = W0 - lr sum_t E P^T.
    rng = np.random.default_rng(6)
    counts = rng.poisson(0.5, size=(25, 7)).astype(float)
    layers = init_layers([7, 6, 4], 3, rng)
    for layer in layers:
        layer.W *= 5
    w0 = [layer.W.copy() for layer in layers]
    b0 = [layer.b.copy() for layer in layers]
    out = run_sample(layers, counts, 2, n_classes=3, burnin=5, learn=True, lr=0.05)
    for l, layer in enumerate(layers):
        e, p = out["err_signal"][l], out["p_in"][l]
        assert not e[:5].any() and e[5:].any()
        np.testing.assert_allclose(
            layer.W, w0[l] - 0.05 * np.einsum("ti,tj->ij", e, p), rtol=1e-12, atol=1e-14
        )
        np.testing.assert_allclose(layer.b, b0[l] - 0.05 * e.sum(0), rtol=1e-12, atol=1e-14)
    # Same run without learning: identical up to and including step burnin, different after.
    for layer, w, b in zip(layers, w0, b0, strict=True):
        layer.W[:], layer.b[:] = w, b
    out_nl = run_sample(layers, counts, 2, n_classes=3, burnin=5, learn=False)
    np.testing.assert_array_equal(out_nl["u"][0][:6], out["u"][0][:6])
    assert np.abs(out_nl["u"][0][6:] - out["u"][0][6:]).max() > 1e-6


def test_errors():
    layer = one_by_one_layer()
    with pytest.raises(ValueError, match="label"):
        run_sample([layer], COUNTS_1, None, n_classes=2, learn=True)
    with pytest.raises(ValueError):
        run_sample([layer], np.zeros((5, 2)), 0, n_classes=2)
    with pytest.raises(ValueError):
        run_sample([layer], COUNTS_1, 0, n_classes=2, loss="hinge")
    with pytest.raises(ValueError):
        run_sample([layer], COUNTS_1, 0, n_classes=2, masks=[np.ones((5, 2))])
    with pytest.raises(ValueError):
        run_sample(
            init_layers([3, 4], 2, np.random.default_rng(0)) + [layer], np.zeros((5, 3)), 0, n_classes=2
        )


# ------------------------------------------------------------------------------------------------------
# Convolution, padding, pooling
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_conv2d_matches_loops(padding):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 6, 5))
    K = rng.normal(size=(3, 2, 3, 2))
    np.testing.assert_allclose(conv2d(x, K, padding), loop_conv(x, K, padding), atol=1e-13)


def test_conv_padding_by_hand():
    out = conv2d(np.ones((1, 3, 3)), np.ones((1, 1, 3, 3)), padding=1)
    np.testing.assert_array_equal(out[0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])


def test_maxpool_by_hand_and_ties():
    u = np.array(
        [
            [
                [1.0, 1.0, 0.0, 2.0, 7.0],
                [0.0, 0.0, 2.0, 0.0, 7.0],
                [-3.0, -1.0, 5.0, 4.0, 7.0],
                [-2.0, -1.0, 6.0, 9.0, 7.0],
                [9.0, 9.0, 9.0, 9.0, 9.0],
            ]
        ]
    )
    pooled, winner = maxpool(u, 2)
    np.testing.assert_array_equal(pooled[0], [[1.0, 2.0], [-1.0, 9.0]])
    np.testing.assert_array_equal(pooled, loop_pool(u, 2))
    # Ties go to the first in row-major order: window (0, 0) is 1 1 / 0 0 -> 0; (0, 1) is 0 2 / 2 0 -> 1.
    np.testing.assert_array_equal(winner[0], [[0, 1], [1, 3]])
    routed = maxpool_route(np.array([[[10.0, 20.0], [30.0, 40.0]]]), winner, u.shape, 2)
    expect = np.zeros((1, 5, 5))
    expect[0, 0, 0], expect[0, 0, 3], expect[0, 2, 1], expect[0, 3, 3] = 10, 20, 30, 40
    np.testing.assert_array_equal(routed, expect)  # floor mode: the remainder row/col gets nothing


def test_kernel_grad_matches_loops():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 5, 6))
    e = rng.normal(size=(3, 5, 6))  # padding 1, 3x3 kernel keeps the size
    dk = conv2d_kernel_grad(x, e, 3, 3, 1)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    loop = np.zeros((3, 2, 3, 3))
    for o in range(3):
        for c in range(2):
            for a in range(3):
                for b in range(3):
                    loop[o, c, a, b] = sum(
                        e[o, i, j] * xp[c, i + a, j + b] for i in range(5) for j in range(6)
                    )
    np.testing.assert_allclose(dk, loop, atol=1e-12)


def _conv_net(rng, pool=2, padding=1):
    conv = init_conv_layer((2, 6, 6), 3, 3, 4, rng, padding=padding, pool=pool)
    conv.K *= 4.0
    dense = init_layers([conv.n_out, 5], 4, rng)[0]
    dense.W *= 4.0
    return [conv, dense]


def test_conv_layer_forward_against_loops():
    rng = np.random.default_rng(9)
    layers = _conv_net(rng)
    conv = layers[0]
    assert conv.full_shape == (3, 6, 6) and conv.out_shape == (3, 3, 3)
    assert conv.n_params == conv.K.size + conv.b.size == 3 * 2 * 9 + 3
    counts = rng.poisson(0.5, size=(30, 2, 6, 6)).astype(float)
    out = run_sample(layers, counts, 1, n_classes=4)
    p = trace_recurrence(counts.reshape(30, -1))
    np.testing.assert_allclose(out["p_in"][0], p, atol=1e-14)
    s_full = out["spikes_full"][0]
    r = refractory_recurrence(s_full.astype(float))
    assert 0 < s_full.mean() < 1
    for t in (0, 5, 17, 29):
        u_full = loop_conv(p[t].reshape(2, 6, 6), conv.K, 1) + conv.b[:, None, None] + r[t].reshape(3, 6, 6)
        np.testing.assert_allclose(out["u_full"][0][t], u_full.ravel(), atol=1e-12)
        np.testing.assert_allclose(out["u"][0][t], loop_pool(u_full, 2).ravel(), atol=1e-12)
    np.testing.assert_array_equal(s_full, (out["u_full"][0] > 0).astype(int))
    np.testing.assert_array_equal(out["spikes"][0], (out["u"][0] > 0).astype(int))
    # The dense layer takes the flattened (C order) pooled spikes.
    np.testing.assert_allclose(out["p_in"][1], trace_recurrence(out["spikes"][0].astype(float)), atol=1e-14)


def test_conv_signal_routed_to_max_unit():
    rng = np.random.default_rng(10)
    layers = _conv_net(rng)
    counts = rng.poisson(0.5, size=(15, 2, 6, 6)).astype(float)
    out = run_sample(layers, counts, 3, n_classes=4)
    for t in range(15):
        u_full = out["u_full"][0][t].reshape(3, 6, 6)
        e_pool = out["err_signal"][0][t].reshape(3, 3, 3)
        e_full = out["err_full"][0][t].reshape(3, 6, 6)
        for o in range(3):
            for i in range(3):
                for j in range(3):
                    win_u = u_full[o, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].ravel()
                    win_e = e_full[o, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].ravel()
                    k = int(np.argmax(win_u))
                    assert win_e[k] == e_pool[o, i, j]
                    assert not np.delete(win_e, k).any()


@pytest.mark.parametrize("pool,padding", [(2, 1), (1, 0), (3, 2)])
def test_kernel_gradient_finite_differences(pool, padding):
    # The shared kernel's gradient (sum over positions of E_full * patch) against finite differences of
    # the anchored surrogate-forward loss through conv -> max-pool -> readout.
    rng = np.random.default_rng(11)
    conv = init_conv_layer((2, 5, 5), 2, 3, 3, rng, padding=padding, pool=pool)
    conv.K *= 3.0
    counts = rng.poisson(0.7, size=(10, 2, 5, 5)).astype(float)
    mask = (rng.random((10, conv.n_out)) < 0.7) / 0.7
    out = run_sample(
        [conv], counts, 0, n_classes=3, loss="ce", surrogate="fast_sigmoid", slope=2.0, masks=[mask]
    )
    t = 9
    x = out["p_in"][0][t].reshape(conv.in_shape)
    r = out["u_full"][0][t].reshape(conv.full_shape) - loop_conv(x, conv.K, padding) - conv.b[:, None, None]

    def sf(K, b):
        u_pool = loop_pool(loop_conv(x, K, padding) + b[:, None, None] + r, pool).ravel()
        return surrogate_forward(u_pool, "fast_sigmoid", 2.0)

    f = _anchored_loss(out["y"][0][t], np.eye(3)[0], "ce", conv.G, mask[t], sf(conv.K, conv.b))
    h = 1e-6
    fd_k = np.zeros_like(conv.K)
    for idx in np.ndindex(conv.K.shape):
        dk = np.zeros_like(conv.K)
        dk[idx] = h
        fd_k[idx] = (f(sf(conv.K + dk, conv.b)) - f(sf(conv.K - dk, conv.b))) / (2 * h)
    fd_b = np.array(
        [
            (f(sf(conv.K, conv.b + h * np.eye(2)[o])) - f(sf(conv.K, conv.b - h * np.eye(2)[o]))) / (2 * h)
            for o in range(2)
        ]
    )
    e_full = out["err_full"][0][t].reshape(conv.full_shape)
    assert np.abs(e_full).max() > 1e-4
    dk = conv2d_kernel_grad(x, e_full, 3, 3, padding)
    np.testing.assert_allclose(dk, fd_k, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(e_full.sum(axis=(1, 2)), fd_b, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("optimizer", ref.OPTIMIZERS)
def test_conv_learning_step(optimizer):
    rng = np.random.default_rng(12)
    layers = _conv_net(rng)
    conv = layers[0]
    counts = rng.poisson(0.5, size=(8, 2, 6, 6)).astype(float)
    k0, b0, g0 = conv.K.copy(), conv.b.copy(), conv.G.copy()
    out = run_sample(layers, counts, 1, n_classes=4, burnin=7, learn=True, lr=0.01, optimizer=optimizer)
    e_full = out["err_full"][0][7].reshape(conv.full_shape)
    xp = np.pad(out["p_in"][0][7].reshape(2, 6, 6), ((0, 0), (1, 1), (1, 1)))
    gk = np.zeros_like(k0)
    for o, c, a, b in np.ndindex(k0.shape):
        gk[o, c, a, b] = np.sum(e_full[o] * xp[c, a : a + 6, b : b + 6])
    gb = e_full.sum(axis=(1, 2))
    if optimizer == "sgd":
        np.testing.assert_allclose(conv.K, k0 - 0.01 * gk, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(conv.b, b0 - 0.01 * gb, rtol=1e-12, atol=1e-15)
    else:
        uk = np.abs(gk) + EPS
        np.testing.assert_allclose(conv.K, k0 - 0.01 * gk / uk, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(out["opt_state"][0]["K"], uk, rtol=1e-12)
        assert set(out["opt_state"][0]) == {"K", "b"} and set(out["opt_state"][1]) == {"W", "b"}
    assert np.abs(conv.K - k0).max() > 0
    np.testing.assert_array_equal(conv.G, g0)


def test_conv_after_conv_chain():
    rng = np.random.default_rng(13)
    c1 = init_conv_layer((1, 8, 8), 2, 3, 2, rng, padding=1, pool=2)
    c2 = init_conv_layer(c1.out_shape, 2, 2, 2, rng, padding=0, pool=1)
    c1.K *= 5
    c2.K *= 5
    assert c2.out_shape == (2, 3, 3) and c2.n_in == c1.n_out
    counts = rng.poisson(0.6, size=(12, 1, 8, 8)).astype(float)
    out = run_sample([c1, c2], counts, 0, n_classes=2)
    np.testing.assert_allclose(out["p_in"][1], trace_recurrence(out["spikes"][0].astype(float)), atol=1e-14)
    # pool = 1: the pooled and full views coincide.
    np.testing.assert_array_equal(out["u"][1], out["u_full"][1])


def test_dense_first_layer_accepts_image_counts():
    rng = np.random.default_rng(14)
    layer = init_layers([2 * 3 * 3, 4], 2, rng)[0]
    counts = rng.poisson(0.5, size=(6, 2, 3, 3)).astype(float)
    a = run_sample([layer], counts, None, n_classes=2)["u"][0]
    b = run_sample([layer], counts.reshape(6, -1), None, n_classes=2)["u"][0]
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------------
# Evaluation, initialisation
# ------------------------------------------------------------------------------------------------------


def test_majority_vote_ties_and_burnin():
    y = np.array([[0, 5, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    assert majority_vote(y, 0) == 0  # 0, 2 have two votes each: smallest wins
    assert majority_vote(y, 3) == 0  # steps 3, 4: one vote each for 2 and 0
    assert majority_vote(y[:4], 1) == 2
    assert majority_vote(np.zeros((3, 4)), 0) == 0  # argmax tie within a step -> class 0
    with pytest.raises(ValueError):
        majority_vote(y, 5)


def test_evaluate_constant_readouts():
    rng = np.random.default_rng(15)
    layers = init_layers([4, 3, 3], 3, rng)
    layers[0].G[:] = 0
    layers[0].g[:] = [0, 1, 0]  # always class 1
    layers[1].G[:] = 0
    layers[1].g[:] = [0, 0, 1]  # always class 2
    samples = [rng.poisson(0.5, size=(10, 4)).astype(float) for _ in range(5)]
    labels = [1, 1, 2, 0, 1]
    acc = evaluate(layers, samples, labels, n_classes=3, burnin=2)
    np.testing.assert_allclose(acc, [0.6, 0.2])
    with pytest.raises(ValueError):
        evaluate(layers, samples, labels, n_classes=3, learn=True)


def test_init_layers():
    layers = init_layers([20, 10, 5], 4, np.random.default_rng(0), lc_ampl=0.5)
    again = init_layers([20, 10, 5], 4, np.random.default_rng(0), lc_ampl=0.5)
    assert [layer.W.shape for layer in layers] == [(10, 20), (5, 10)]
    assert [layer.G.shape for layer in layers] == [(4, 10), (4, 5)]
    for layer, n_in, n_out in zip(layers, [20, 10], [10, 5], strict=True):
        assert np.abs(layer.W).max() <= 1 / np.sqrt(n_in) and np.abs(layer.b).max() <= 1 / np.sqrt(n_in)
        assert np.abs(layer.G).max() <= 0.5 / np.sqrt(n_out) and np.abs(layer.g).max() <= 0.5 / np.sqrt(n_out)
        assert layer.W.dtype == np.float64 and layer.n_params == n_in * n_out + n_out
    for a, b in zip(layers, again, strict=True):
        np.testing.assert_array_equal(a.W, b.W)
        np.testing.assert_array_equal(a.G, b.G)


def test_conv_layer_dataclass_fields():
    layer = ConvLayer(
        K=np.zeros((4, 2, 3, 3)),
        b=np.zeros(4),
        G=np.zeros((3, 4 * 2 * 2)),
        g=np.zeros(3),
        padding=0,
        pool=2,
        in_shape=(2, 6, 6),
    )
    assert layer.full_shape == (4, 4, 4) and layer.out_shape == (4, 2, 2) and layer.n_out == 16
    assert layer.n_params == 4 * 2 * 3 * 3 + 4


def test_adamax_state_created_for_missing_keys():
    layers = init_layers([3, 2], 2, np.random.default_rng(16))
    st = [{}]
    out = run_sample(layers, np.ones((4, 3)), 0, n_classes=2, learn=True, optimizer="adamax", opt_state=st)
    assert out["opt_state"] is st and set(st[0]) == {"W", "b"} and st[0]["W"].shape == (2, 3)
    assert np.all(st[0]["W"] >= EPS)
    with pytest.raises(ValueError):
        run_sample(
            layers, np.ones((4, 3)), 0, n_classes=2, learn=True, optimizer="adamax", opt_state=[{}, {}]
        )


def test_surrogate_defaults_are_the_derivations():
    """One default per surrogate parameter: the oracle keeps its own table, with the derivation's numbers."""
    from decolle_brian.derivation import SURROGATES as DERIVED  # noqa: PLC0415 - the oracle imports nothing of it

    assert set(ref.SURROGATE_DEFAULTS) == set(DERIVED) == set(ref.SURROGATES)
    for name, (_, params) in DERIVED.items():
        assert ref.SURROGATE_DEFAULTS[name] == params, name
