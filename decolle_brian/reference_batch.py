"""Batched NumPy reference of DECOLLE (minibatches as the published reference trains): the test oracle of batches.

B samples of equal length start from rest together and run side by side; each keeps its own state (Q, P, R, S),
its own dropout masks and its own one-hot target, and the B copies share one set of weights. At every step
``t >= burnin`` each layer's loss is the batch mean of the per-sample local losses, and ONE optimiser step is
taken on its gradient::

    L_l[t]       = (1/B) sum_b loss(y_lb[t], target_b)                   per-sample loss: mean over classes (SmoothL1)
    E_bi[t]      = sigma'(U_bi[t]) * m_bi[t] * sum_k G_ki dL_l/dy_bk      dL_l/dy_b = (1/B) loss'(y_b, target_b)
    dL_l/dW_ij   = sum_b E_bi[t] P_bj[t]  =  (1/B) sum_b (online gradient of sample b)
    dL_l/db_i    = sum_b E_bi[t]

The step is SGD (``W -= lr g``) or Adamax with beta1 = 0 (``u = max(beta2 u, |g| + eps)``, ``W -= lr g / u``)
on that mean gradient ``g``, as PyTorch's optimisers do after ``loss.backward()`` of a loss with the default
``reduction='mean'`` (SmoothL1 and MSE: mean over batch and classes; cross-entropy: mean over the batch). The new
weights first act on step ``t + 1`` of every sample. Conv layers share their kernel across positions and across
the batch: ``dK = sum_b conv2d_kernel_grad(P_b, E_full_b)``.

With B = 1 every line is :func:`decolle_brian.reference.run_sample` (bit for bit: the matrix products are taken
per sample, the 1/B factor is a division by 1, and the sums over the batch have one term). The per-sample pieces
(surrogates, losses, conv, pooling, the optimiser step) are those of :mod:`decolle_brian.reference`; like it,
this module imports nothing else from the package it checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from decolle_brian.reference import (
    LOSSES,
    OPTIMIZERS,
    SURROGATES,
    Constants,
    ConvLayer,
    conv2d,
    conv2d_kernel_grad,
    loss_grad,
    loss_value,
    majority_vote,
    maxpool,
    maxpool_route,
    optimizer_step,
    surrogate_grad,
)

__all__ = ["run_batch", "evaluate_batch", "batch_gradients"]


def _check_chain(layers: list) -> None:
    for l in range(1, len(layers)):
        if layers[l].n_in != layers[l - 1].n_out:
            raise ValueError(
                f"layer {l} expects {layers[l].n_in} inputs, layer {l - 1} has {layers[l - 1].n_out} outputs"
            )
    for l, layer in enumerate(layers):
        if layer.G.shape[1] != layer.n_out:
            raise ValueError(f"layer {l}: readout G has {layer.G.shape[1]} columns, layer has {layer.n_out} outputs")


def _full_size(layer) -> int:
    """Units at full (unpooled) resolution: where R and the refractory spikes live."""
    return int(np.prod(layer.full_shape)) if isinstance(layer, ConvLayer) else layer.n_out


def batch_gradients(layer, p: np.ndarray, e_full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of the batch-mean loss of one layer at one step, summed over the batch in sample order.

    Parameters
    ----------
    layer : DenseLayer or ConvLayer
    p : ndarray, shape (B, n_in)
        Presynaptic traces ``P_b[t]``.
    e_full : ndarray, shape (B, n_full)
        Learning signals of the batch-mean loss ``E_b[t]`` (they carry the 1/B), at full resolution.

    Returns
    -------
    grad_param, grad_bias : ndarray
        Dense: ``sum_b outer(E_b, P_b)`` (n_out, n_in) and ``sum_b E_b``. Conv: ``sum_b dK(P_b, E_b)`` and
        ``sum_b sum_positions E_b`` per channel. The sum runs b = 0, 1, ... one term at a time (with one sample
        it is that sample's term, unchanged).
    """
    grad = bias = None
    for p_b, e_b in zip(p, e_full, strict=True):
        if isinstance(layer, ConvLayer):
            e3 = e_b.reshape(layer.full_shape)
            term = conv2d_kernel_grad(p_b.reshape(layer.in_shape), e3, layer.K.shape[2], layer.K.shape[3],
                                      layer.padding)
            term_b = e3.sum(axis=(1, 2))
        else:
            term = np.multiply.outer(e_b, p_b)
            term_b = e_b.copy()
        if grad is None:
            grad, bias = term, term_b
        else:
            grad += term
            bias += term_b
    return grad, bias


def run_batch(
    layers: list,
    counts: np.ndarray,
    labels: Sequence[int] | None,
    *,
    n_classes: int,
    consts: Constants | None = None,
    burnin: int = 0,
    learn: bool = False,
    loss: str = "smoothl1",
    surrogate: str = "fast_sigmoid",
    slope: float | None = None,
    width: float | None = None,
    optimizer: str = "sgd",
    lr: float = 1e-3,
    beta2: float = 0.95,
    eps: float = 1e-8,
    opt_state: list | None = None,
    masks: list[np.ndarray] | None = None,
    dtype: type = np.float64,
) -> dict:
    """Simulate a batch of B samples side by side, optionally learning on the batch-mean gradient.

    Per sample and layer the forward equations are those of :func:`decolle_brian.reference.run_sample`; the
    learning signal is that of the batch-mean loss (the online signal divided by B) and, after all layers
    have done step ``t`` and if ``learn`` and ``t >= burnin``, each layer takes one optimiser step on
    :func:`batch_gradients`, in place.

    Parameters
    ----------
    layers : list of DenseLayer or ConvLayer
        The network, shared by the B samples; W/K and b are updated IN PLACE when ``learn``.
    counts : ndarray, shape (B, T, n_in) or (B, T, c, H, W)
        Input event counts per sample and step (all samples have T steps).
    labels : sequence of B ints, or None
        Classes of the samples. None: no loss, no learning signal.
    consts : Constants, optional
        Decays of the LIF layer (None: the defaults).
    n_classes, burnin, learn, loss, surrogate, slope, width, optimizer, lr, beta2, eps
        As :func:`decolle_brian.reference.run_sample`.
    opt_state : list of dict or None
        Adamax state per layer (one per parameter, shared by the batch), continued and updated in place.
    masks : list of (ndarray or None) or None
        Per layer, shape ``(T, B, n_out)`` dropout multipliers of each sample's readout path. None: no dropout.
    dtype : {numpy.float64, numpy.float32}
        Floating-point type of the whole simulation: the state (Q, P, R, S, U), the inputs, targets, masks and
        the constants are of this type and every operation rounds to it (NumPy keeps float32 x float32 in float32
        and takes Python floats as float32). For float32 the layers' parameters and ``opt_state`` must already be
        float32 (they are updated in place; ValueError otherwise). float32 is the oracle of a
        ``network.precision = "float32"`` build: the same equations in single precision.

    Returns
    -------
    dict
        As :func:`decolle_brian.reference.run_sample` with a batch axis after the time axis: ``spikes``,
        ``spikes_full``, ``u``, ``u_full``, ``err_signal``, ``err_full``, ``p_in`` per layer (T, B, n); ``y``
        per layer (T, B, n_classes); ``loss`` per layer (T, B) each sample's own loss; ``batch_loss`` per
        layer (T,) its batch mean (what the optimiser descends); ``opt_state``. ``err_signal`` is the signal
        of the batch-mean loss (it carries the 1/B).
    """
    c = Constants() if consts is None else consts
    if learn and labels is None:
        raise ValueError("learn=True needs labels")
    if burnin < 0:
        raise ValueError("burnin must be >= 0")
    for name, value, allowed in (("loss", loss, LOSSES), ("surrogate", surrogate, SURROGATES),
                                 ("optimizer", optimizer, OPTIMIZERS)):
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}")
    _check_chain(layers)
    n_layers = len(layers)
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    for l, layer in enumerate(layers if dtype == np.float32 else []):  # float64: any parameters, as before
        names = ("K" if isinstance(layer, ConvLayer) else "W", "b", "G", "g")
        wrong = [name for name in names if np.asarray(getattr(layer, name)).dtype != dtype]
        if wrong:
            raise ValueError(f"layer {l}: parameters {wrong} are not {dtype} (give them in the simulation's dtype)")
    # the constants as values of the dtype (float32: alpha as a float32 network stores it)
    c = Constants(*(float(dtype.type(value)) for value in (c.alpha, c.beta, c.alpharp, c.wrp)))
    counts = np.asarray(counts, dtype=dtype)
    if counts.ndim < 3:
        raise ValueError(f"counts must be (B, T, inputs...), got shape {counts.shape}")
    n_batch, n_steps = counts.shape[:2]
    if n_batch < 1:
        raise ValueError("a batch needs at least one sample")
    counts = counts.reshape(n_batch, n_steps, -1)
    if counts.shape[2] != layers[0].n_in:
        raise ValueError(f"counts give {counts.shape[2]} inputs per step, the first layer takes {layers[0].n_in}")
    if masks is None:
        masks = [None] * n_layers
    if len(masks) != n_layers:
        raise ValueError(f"{len(masks)} masks for {n_layers} layers")
    for l, m in enumerate(masks):
        if m is not None and np.shape(m) != (n_steps, n_batch, layers[l].n_out):
            raise ValueError(f"mask {l} has shape {np.shape(m)}, expected {(n_steps, n_batch, layers[l].n_out)}")

    is_conv = [isinstance(layer, ConvLayer) for layer in layers]
    n_full = [_full_size(layer) for layer in layers]
    targets = None
    if labels is not None:
        labels = [int(x) for x in labels]
        if len(labels) != n_batch:
            raise ValueError(f"{len(labels)} labels for a batch of {n_batch} samples")
        for label in labels:
            if not 0 <= label < n_classes:
                raise ValueError(f"label {label} out of range for {n_classes} classes")
        targets = np.zeros((n_batch, n_classes), dtype=dtype)
        targets[np.arange(n_batch), labels] = 1.0

    if opt_state is None:
        opt_state = [{} for _ in layers]
    elif len(opt_state) != n_layers:
        raise ValueError(f"opt_state has {len(opt_state)} entries for {n_layers} layers")
    if optimizer == "adamax":
        for st, layer, cv in zip(opt_state, layers, is_conv, strict=True):
            key, param = ("K", layer.K) if cv else ("W", layer.W)
            st.setdefault(key, np.zeros(param.shape, dtype=dtype))
            st.setdefault("b", np.zeros(layer.b.shape, dtype=dtype))
            if st[key].shape != param.shape or st["b"].shape != layer.b.shape:
                raise ValueError("opt_state arrays do not match the layer shapes")
            if dtype == np.float32 and (st[key].dtype != dtype or st["b"].dtype != dtype):
                raise ValueError(f"opt_state arrays are not {dtype}")

    # State at the start of the batch: all zero, one row per sample.
    q = [np.zeros((n_batch, layer.n_in), dtype=dtype) for layer in layers]
    p = [np.zeros((n_batch, layer.n_in), dtype=dtype) for layer in layers]
    r = [np.zeros((n_batch, nf), dtype=dtype) for nf in n_full]
    s_prev = [np.zeros((n_batch, nf), dtype=dtype) for nf in n_full]

    def zeros(n, kind=dtype):
        return [np.zeros((n_steps, n_batch, n_), dtype=kind) for n_ in n]

    rec = {
        "spikes": zeros([layer.n_out for layer in layers], np.int64),
        "spikes_full": zeros(n_full, np.int64),
        "u": zeros([layer.n_out for layer in layers]),
        "u_full": zeros(n_full),
        "y": zeros([n_classes] * n_layers),
        "loss": [np.full((n_steps, n_batch), np.nan) for _ in layers],
        "batch_loss": [np.full(n_steps, np.nan) for _ in layers],
        "err_signal": zeros([layer.n_out for layer in layers]),
        "err_full": zeros(n_full),
        "p_in": zeros([layer.n_in for layer in layers]),
    }

    for t in range(n_steps):
        s_in = counts[:, t]
        learn_now = learn and t >= burnin
        signal_now = targets is not None and t >= burnin
        for l, layer in enumerate(layers):
            # Elementwise over (B, n): P from the OLD Q (one step of delay), then Q, then R from the last spikes.
            p[l] = c.alpha * p[l] + (1.0 - c.alpha) * q[l]
            q[l] = c.beta * q[l] + (1.0 - c.beta) * s_in
            r[l] = c.alpharp * r[l] - (1.0 - c.alpharp) * c.wrp * s_prev[l]
            s_out_all = np.zeros((n_batch, layer.n_out), dtype=dtype)
            for b in range(n_batch):
                # Matrix products per sample: each row is the online forward of its sample with the shared weights.
                if is_conv[l]:
                    u_img = (conv2d(p[l][b].reshape(layer.in_shape), layer.K, layer.padding)
                             + layer.b[:, None, None] + r[l][b].reshape(layer.full_shape))
                    u_pool, winner = maxpool(u_img, layer.pool)
                    u_full, u_out = u_img.ravel(), u_pool.ravel()
                else:
                    u_full = layer.W @ p[l][b] + layer.b + r[l][b]
                    u_out = u_full
                s_full = (u_full > 0).astype(dtype)
                s_out = (u_out > 0).astype(dtype) if is_conv[l] else s_full
                s_prev[l][b] = s_full
                s_out_all[b] = s_out

                m = np.asarray(masks[l][t, b], dtype=dtype) if masks[l] is not None else None
                y = layer.G @ (s_out if m is None else m * s_out) + layer.g
                rec["u"][l][t, b] = u_out
                rec["u_full"][l][t, b] = u_full
                rec["spikes"][l][t, b] = s_out
                rec["spikes_full"][l][t, b] = s_full
                rec["y"][l][t, b] = y
                if targets is not None:
                    rec["loss"][l][t, b] = loss_value(y, targets[b], loss)
                if signal_now:
                    # the batch-mean loss: each sample's dL/dy carries 1/B
                    dl_dy = loss_grad(y, targets[b], loss) / n_batch
                    e = surrogate_grad(u_out, surrogate, slope, width) * (layer.G.T @ dl_dy)
                    if m is not None:
                        e = e * m
                    e_full = (maxpool_route(e.reshape(layer.out_shape), winner, layer.full_shape, layer.pool).ravel()
                              if is_conv[l] else e)
                    rec["err_signal"][l][t, b] = e
                    rec["err_full"][l][t, b] = e_full
            rec["p_in"][l][t] = p[l]
            if targets is not None:
                rec["batch_loss"][l][t] = rec["loss"][l][t].mean()
            # The next layer sees this layer's undropped spikes of the same step.
            s_in = s_out_all

        if learn_now:
            # One step per layer on the batch-mean gradient of U[t], P[t]; the new weights act from U[t+1] on.
            for l, layer in enumerate(layers):
                st = opt_state[l]
                grad, grad_b = batch_gradients(layer, p[l], rec["err_full"][l][t])
                key, param = ("K", layer.K) if is_conv[l] else ("W", layer.W)
                optimizer_step(param, grad, st.get(key), optimizer, lr, beta2, eps)
                optimizer_step(layer.b, grad_b, st.get("b"), optimizer, lr, beta2, eps)

    rec["opt_state"] = opt_state
    return rec


def evaluate_batch(layers: list, samples, labels, batch_size: int, **kw) -> np.ndarray:
    """Accuracy per layer (majority vote over steps ``t >= burnin``), simulating ``batch_size`` samples at once.

    Without learning the samples of a batch do not interact, so this equals
    :func:`decolle_brian.reference.evaluate`; the last batch may be smaller. ``samples`` must all have the same
    number of steps within a batch. ``**kw`` as :func:`run_batch` (``n_classes`` required; ``learn``, ``masks``
    and ``opt_state`` are refused).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for key in ("learn", "masks", "opt_state"):
        if kw.get(key) not in (None, False):
            raise ValueError(f"evaluate_batch does not take {key}={kw[key]!r}")
        kw.pop(key, None)
    burnin = kw.get("burnin", 0)
    labels = np.asarray(labels)
    samples = list(samples)
    if len(samples) != len(labels):
        raise ValueError(f"{len(samples)} samples and {len(labels)} labels")
    correct = np.zeros(len(layers))
    for start in range(0, len(samples), batch_size):
        batch = np.stack([np.asarray(x, dtype=float) for x in samples[start:start + batch_size]])
        out = run_batch(layers, batch, None, learn=False, **kw)
        for b, label in enumerate(labels[start:start + batch_size]):
            correct += [majority_vote(y[:, b], burnin) == label for y in out["y"]]
    return correct / len(labels)
