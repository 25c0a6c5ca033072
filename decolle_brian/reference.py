"""Independent NumPy reference of DECOLLE: the test oracle for the Brian2 simulation.

Written from the model specification (docs/model.md) alone. It imports nothing from the rest of the
package (only numpy and scipy), so a mistake elsewhere cannot leak into the oracle. The Brian2 networks
are compared with :func:`run_sample` step for step: spikes identical, membrane potentials within 1e-9,
weights within 1e-6 relative.

The model, per layer, per time step ``t`` (dt = 1 ms), presynaptic ``j``, postsynaptic ``i``::

    Q_j[t] = beta    * Q_j[t-1] + (1 - beta)  * S_in_j[t]        S_in may be an event count (> 1)
    P_j[t] = alpha   * P_j[t-1] + (1 - alpha) * Q_j[t-1]         the OLD Q: one step of delay
    R_i[t] = alpharp * R_i[t-1] - (1 - alpharp) * wrp * S_i[t-1]
    U_i[t] = sum_j W_ij P_j[t] + b_i + R_i[t]
    S_i[t] = 1 if U_i[t] > 0 else 0

All state is zero at the start of a sample. Layer ``l+1`` receives layer ``l``'s (undropped) ``S[t]`` in
the same step. Every layer has a fixed random readout and a local loss against the one-hot target::

    y_l[t] = G_l @ (m_l[t] * S_l[t]) + g_l                       m: inverted-dropout multipliers (or 1)
    E_i[t] = sigma'(U_i[t]) * m_i[t] * sum_k G_ki dL/dy_k         the local learning signal
    dW_ij  = E_i[t] P_j[t],   db_i = E_i[t]                       never across layers

and the optimiser steps after every step ``t >= burnin``; the new weights first act on ``U[t+1]``.

Convolutional layers (stride 1, zero padding, optional non-overlapping max-pool on ``U`` before the spike)::

    U_full[t] = conv2d(P[t], K) + b[channel] + R[t]               R, S_full at full resolution
    u[t]      = maxpool(U_full[t]);   s[t] = (u[t] > 0)           s goes to the readout and the next layer
    E_full    = E routed to the unit that won the max             (ties: first in row-major order)
    dK[o, c, a, e] = sum_{y, x} E_full[o, y, x] P_pad[c, y + a, x + e],   db[o] = sum_{y, x} E_full[o, y, x]

Flattening is C order (channel, row, col) everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import expit

__all__ = [
    "Constants",
    "DenseLayer",
    "ConvLayer",
    "LOSSES",
    "SURROGATES",
    "SURROGATE_DEFAULTS",
    "OPTIMIZERS",
    "surrogate_grad",
    "loss_value",
    "loss_grad",
    "conv2d",
    "conv2d_kernel_grad",
    "maxpool",
    "maxpool_route",
    "optimizer_step",
    "run_sample",
    "majority_vote",
    "evaluate",
    "init_layers",
    "init_conv_layer",
]

LOSSES = ("smoothl1", "mse", "ce")
SURROGATES = ("fast_sigmoid", "boxcar", "sigmoid")
#: Default shape parameters of the surrogates, those of the PyTorch DECOLLE code (decolle-public,
#: decolle/base_model.py): ``FastSigmoid`` divides by ``(10 |u| + 1)^2`` (slope 10), ``SmoothStep`` passes the
#: gradient for ``-0.5 < u <= 0.5`` (width 1), ``SigmoidStep`` multiplies by ``sig(u) (1 - sig(u))`` (slope 1).
#: The oracle's own table (it imports nothing of the package); tests/test_reference.py checks that the
#: derivation's defaults are the same numbers.
SURROGATE_DEFAULTS = {"fast_sigmoid": {"slope": 10.0}, "boxcar": {"width": 1.0}, "sigmoid": {"slope": 1.0}}
OPTIMIZERS = ("sgd", "adamax")


@dataclass(frozen=True)
class Constants:
    """Per-step decay factors of the LIF layer (dt = 1 ms).

    Attributes
    ----------
    alpha : float
        Membrane (P) decay, ``tau_mem = -dt / ln(alpha)`` (32.8 ms).
    beta : float
        Synaptic (Q) decay, ``tau_syn = -dt / ln(beta)`` (12.0 ms).
    alpharp : float
        Refractory (R) decay, ``tau_ref = -dt / ln(alpharp)`` (2.3 ms).
    wrp : float
        Refractory jump per own spike: ``R -= (1 - alpharp) * wrp``.
    """

    alpha: float = 0.97
    beta: float = 0.92
    alpharp: float = 0.65
    wrp: float = 1.0


@dataclass
class DenseLayer:
    """A fully connected LIF layer with its fixed local readout.

    Attributes
    ----------
    W : ndarray, shape (n_out, n_in)
        Trained weights, ``U = W @ P + b + R``.
    b : ndarray, shape (n_out,)
        Trained bias (acts as a negative threshold; the spike threshold is 0).
    G : ndarray, shape (n_classes, n_out)
        Fixed readout weights, ``y = G @ (m * S) + g``.
    g : ndarray, shape (n_classes,)
        Fixed readout bias.
    """

    W: np.ndarray
    b: np.ndarray
    G: np.ndarray
    g: np.ndarray

    @property
    def n_in(self) -> int:
        """Number of presynaptic inputs."""
        return self.W.shape[1]

    @property
    def n_out(self) -> int:
        """Number of output neurons (the readout path)."""
        return self.W.shape[0]

    @property
    def n_params(self) -> int:
        """Number of trained parameters, ``W.size + b.size``."""
        return self.W.size + self.b.size


@dataclass
class ConvLayer:
    """A convolutional LIF layer (stride 1, zero padding, max-pool on ``U``) with its fixed readout.

    Attributes
    ----------
    K : ndarray, shape (c_out, c_in, kh, kw)
        Shared kernel (cross-correlation, as ``torch.nn.Conv2d``).
    b : ndarray, shape (c_out,)
        Shared bias per output channel.
    G : ndarray, shape (n_classes, c_out * H_pooled * W_pooled)
        Fixed readout weights on the flattened (C order) pooled spikes.
    g : ndarray, shape (n_classes,)
        Fixed readout bias.
    padding : int
        Zero padding on every side of the input.
    pool : int
        Max-pool size and stride (1 = no pooling). A remainder that does not fill a window is dropped
        (floor mode, as ``torch.nn.MaxPool2d``).
    in_shape : tuple of int
        Input shape ``(c_in, H, W)``.
    """

    K: np.ndarray
    b: np.ndarray
    G: np.ndarray
    g: np.ndarray
    padding: int
    pool: int
    in_shape: tuple[int, int, int]

    @property
    def full_shape(self) -> tuple[int, int, int]:
        """Shape ``(c_out, H_out, W_out)`` of the unpooled ``U``: ``H_out = H + 2 padding - kh + 1``."""
        c_out, _, kh, kw = self.K.shape
        _, h, w = self.in_shape
        return (c_out, h + 2 * self.padding - kh + 1, w + 2 * self.padding - kw + 1)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """Shape ``(c_out, H_out // pool, W_out // pool)`` of the pooled output."""
        c_out, h, w = self.full_shape
        return (c_out, h // self.pool, w // self.pool)

    @property
    def n_in(self) -> int:
        """Number of (flattened) inputs, ``c_in * H * W``."""
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        """Number of (flattened) pooled outputs, the readout path."""
        return int(np.prod(self.out_shape))

    @property
    def n_params(self) -> int:
        """Number of trained parameters, ``K.size + b.size`` (the kernel is shared)."""
        return self.K.size + self.b.size


# --------------------------------------------------------------------------------------------------------
# Elementwise pieces
# --------------------------------------------------------------------------------------------------------


def surrogate_grad(
    u: np.ndarray, surrogate: str = "fast_sigmoid", slope: float | None = None, width: float | None = None
) -> np.ndarray:
    """Surrogate derivative ``sigma'(u)`` of the Heaviside spike function.

    Parameters
    ----------
    u : ndarray
        Membrane potential.
    surrogate : {"fast_sigmoid", "boxcar", "sigmoid"}
        ``fast_sigmoid``: ``1 / (slope |u| + 1)^2``;
        ``boxcar``: ``1 if -width/2 < u <= width/2 else 0``;
        ``sigmoid``: ``slope * sig(slope u) * (1 - sig(slope u))``.
    slope, width : float, optional
        Shape parameters (``width`` only for the boxcar); None: the surrogate's default in
        :data:`SURROGATE_DEFAULTS` (fast_sigmoid slope 10, boxcar width 1, sigmoid slope 1).

    Returns
    -------
    ndarray
        ``sigma'(u)``, same shape as ``u``; float32 for a float32 ``u``, float64 otherwise.
    """
    u = np.asarray(u)
    u = u.astype(np.float32 if u.dtype == np.float32 else np.float64, copy=False)  # float32 stays, the rest float64
    defaults = SURROGATE_DEFAULTS.get(surrogate, {})
    slope = defaults.get("slope") if slope is None else slope
    width = defaults.get("width") if width is None else width
    if surrogate == "fast_sigmoid":
        return 1.0 / (slope * np.abs(u) + 1.0) ** 2
    if surrogate == "boxcar":
        return ((u > -width / 2) & (u <= width / 2)).astype(u.dtype)
    if surrogate == "sigmoid":
        sg = expit(slope * u)
        return slope * sg * (1.0 - sg)
    raise ValueError(f"unknown surrogate {surrogate!r}; expected one of {SURROGATES}")


def _log_softmax(y: np.ndarray) -> np.ndarray:
    # Shift by the max so exp never overflows.
    z = y - np.max(y)
    return z - np.log(np.sum(np.exp(z)))


def loss_value(y: np.ndarray, target: np.ndarray, loss: str = "smoothl1") -> float:
    """Per-step local loss of one readout.

    Parameters
    ----------
    y : ndarray, shape (C,)
        Readout.
    target : ndarray, shape (C,)
        One-hot target.
    loss : {"smoothl1", "mse", "ce"}
        With ``d = y - target``: ``smoothl1`` = ``mean_k (0.5 d_k^2 if |d_k| < 1 else |d_k| - 0.5)``
        (PyTorch ``SmoothL1Loss``, beta = 1); ``mse`` = mean_k d_k^2;
        ``ce`` = -sum_k target_k log softmax(y)_k.

    Returns
    -------
    float
    """
    d = y - target
    if loss == "smoothl1":
        ad = np.abs(d)
        return float(np.mean(np.where(ad < 1.0, 0.5 * d * d, ad - 0.5)))
    if loss == "mse":
        return float(np.mean(d * d))
    if loss == "ce":
        return float(-np.sum(target * _log_softmax(y)))
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")


def loss_grad(y: np.ndarray, target: np.ndarray, loss: str = "smoothl1") -> np.ndarray:
    """Gradient ``dL/dy`` of :func:`loss_value`.

    ``smoothl1``: ``clip(d, -1, 1) / C``; ``mse``: ``2 d / C``; ``ce``: ``softmax(y) - target``
    (``d = y - target``, ``C`` classes).
    """
    d = y - target
    c = y.shape[-1]
    if loss == "smoothl1":
        return np.clip(d, -1.0, 1.0) / c
    if loss == "mse":
        return 2.0 * d / c
    if loss == "ce":
        return np.exp(_log_softmax(y)) - target
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")


# --------------------------------------------------------------------------------------------------------
# Convolution and pooling (stride tricks; deliberately not scipy.signal)
# --------------------------------------------------------------------------------------------------------


def _windows(x: np.ndarray, kh: int, kw: int, padding: int) -> np.ndarray:
    """Patches of the zero-padded input, shape ``(c_in, H_out, W_out, kh, kw)`` (a view)."""
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    return sliding_window_view(x, (kh, kw), axis=(1, 2))


def conv2d(x: np.ndarray, K: np.ndarray, padding: int = 0) -> np.ndarray:
    """Stride-1 cross-correlation with zero padding (``torch.nn.functional.conv2d`` without bias).

    ``out[o, y, x] = sum_{c, a, e} K[o, c, a, e] * x_pad[c, y + a, x + e]``.

    Parameters
    ----------
    x : ndarray, shape (c_in, H, W)
    K : ndarray, shape (c_out, c_in, kh, kw)
    padding : int

    Returns
    -------
    ndarray, shape (c_out, H + 2 padding - kh + 1, W + 2 padding - kw + 1)
    """
    win = _windows(x, K.shape[2], K.shape[3], padding)
    return np.tensordot(K, win, axes=([1, 2, 3], [0, 3, 4]))


def conv2d_kernel_grad(x: np.ndarray, e: np.ndarray, kh: int, kw: int, padding: int = 0) -> np.ndarray:
    """Gradient of ``sum(e * conv2d(x, K))`` with respect to the shared kernel ``K``.

    ``dK[o, c, a, b] = sum_{y, x} e[o, y, x] * x_pad[c, y + a, x + b]``.

    Parameters
    ----------
    x : ndarray, shape (c_in, H, W)
        The presynaptic traces.
    e : ndarray, shape (c_out, H_out, W_out)
        Per-unit learning signal at full (unpooled) resolution.
    kh, kw, padding : int

    Returns
    -------
    ndarray, shape (c_out, c_in, kh, kw)
    """
    win = _windows(x, kh, kw, padding)
    return np.tensordot(e, win, axes=([1, 2], [1, 2]))


def maxpool(u: np.ndarray, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping max-pool (size = stride = ``pool``, floor mode).

    Parameters
    ----------
    u : ndarray, shape (c, H, W)
    pool : int

    Returns
    -------
    pooled : ndarray, shape (c, H // pool, W // pool)
    winner : ndarray of int, shape (c, H // pool, W // pool)
        Row-major index ``r * pool + col`` inside each window of the unit that won the max; ties go to
        the first in row-major order (``np.argmax``; also what PyTorch's CPU kernel does).
    """
    c, h, w = u.shape
    hp, wp = h // pool, w // pool
    blocks = u[:, : hp * pool, : wp * pool].reshape(c, hp, pool, wp, pool)
    blocks = blocks.transpose(0, 1, 3, 2, 4).reshape(c, hp, wp, pool * pool)
    winner = np.argmax(blocks, axis=-1)
    pooled = np.take_along_axis(blocks, winner[..., None], axis=-1)[..., 0]
    return pooled, winner


def maxpool_route(
    e_pooled: np.ndarray, winner: np.ndarray, full_shape: tuple[int, int, int], pool: int
) -> np.ndarray:
    """Gradient of :func:`maxpool`: put each pooled value on the unit that won its window, zero elsewhere.

    Parameters
    ----------
    e_pooled : ndarray, shape (c, Hp, Wp)
    winner : ndarray of int, shape (c, Hp, Wp)
        From :func:`maxpool`.
    full_shape : tuple (c, H, W)
        Unpooled shape (units in a dropped remainder get zero).
    pool : int

    Returns
    -------
    ndarray, shape full_shape
    """
    c, hp, wp = e_pooled.shape
    blocks = np.zeros((c, hp, wp, pool * pool))
    np.put_along_axis(blocks, winner[..., None], e_pooled[..., None], axis=-1)
    out = np.zeros(full_shape)
    out[:, : hp * pool, : wp * pool] = (
        blocks.reshape(c, hp, wp, pool, pool).transpose(0, 1, 3, 2, 4).reshape(c, hp * pool, wp * pool)
    )
    return out


# --------------------------------------------------------------------------------------------------------
# Optimiser
# --------------------------------------------------------------------------------------------------------


def optimizer_step(
    param: np.ndarray,
    grad: np.ndarray,
    state: np.ndarray | None,
    optimizer: str = "sgd",
    lr: float = 1e-3,
    beta2: float = 0.95,
    eps: float = 1e-8,
) -> None:
    """One optimiser step, IN PLACE on ``param`` (and ``state``); ``grad`` is overwritten (scratch).

    ``sgd``: ``param -= lr * grad``.
    ``adamax`` with beta1 = 0 (PyTorch ``Adamax(betas=(0, beta2))``): ``u = max(beta2 * u, |grad| + eps)``,
    ``param -= lr * grad / u``; ``u`` (the ``state`` array, same shape as ``param``) starts at 0.
    """
    if optimizer == "sgd":
        grad *= lr
        param -= grad
    elif optimizer == "adamax":
        state *= beta2
        a = np.abs(grad)
        a += eps
        np.maximum(state, a, out=state)
        grad *= lr
        grad /= state
        param -= grad
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {OPTIMIZERS}")


# --------------------------------------------------------------------------------------------------------
# Simulation of one sample
# --------------------------------------------------------------------------------------------------------


def _check_chain(layers: list) -> None:
    for l in range(1, len(layers)):
        if layers[l].n_in != layers[l - 1].n_out:
            raise ValueError(
                f"layer {l} expects {layers[l].n_in} inputs, layer {l - 1} has {layers[l - 1].n_out} outputs"
            )
    for l, layer in enumerate(layers):
        if layer.G.shape[1] != layer.n_out:
            raise ValueError(
                f"layer {l}: readout G has {layer.G.shape[1]} columns, layer has {layer.n_out} outputs"
            )


def run_sample(
    layers: list,
    counts: np.ndarray,
    label: int | None,
    *,
    n_classes: int,
    consts: Constants = Constants(),
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
) -> dict:
    """Simulate one sample through a stack of DECOLLE layers, optionally learning, and record everything.

    Per layer and step ``t`` (see the module docstring for the equations): update Q, P (P from the old Q),
    R (from the previous step's own full-resolution spikes), U, S; readout ``y = G @ (m * s) + g``; loss and
    ``dL/dy`` against the one-hot ``label``; learning signal ``E = sigma'(u) * m * (G.T @ dL/dy)`` for
    ``t >= burnin``. After all layers have done step ``t`` and if ``learn`` and ``t >= burnin``, each layer
    steps its optimiser with ``dW = outer(E, P)`` (conv: :func:`conv2d_kernel_grad`), ``db = E``
    (conv: summed over positions), in place.

    Parameters
    ----------
    layers : list of DenseLayer or ConvLayer
        The network; its W/K and b are updated IN PLACE when ``learn`` (they should be float64).
    counts : ndarray, shape (T, n_in) or (T, c, H, W)
        Input event counts per step (may be > 1). Reshaped (C order) to what the first layer takes.
    label : int or None
        Class of the sample. None: no loss, no learning signal (``loss`` is NaN, ``err_signal`` 0).
    n_classes : int
    consts : Constants
    burnin : int
        Steps ``t < burnin`` are simulated without learning signal or weight steps.
    learn : bool
        Step the optimiser after every step ``t >= burnin`` (needs a label).
    loss : {"smoothl1", "mse", "ce"}
    surrogate : {"fast_sigmoid", "boxcar", "sigmoid"}
    slope, width : float, optional
        Surrogate parameters; None: the surrogate's default (:data:`SURROGATE_DEFAULTS`).
    optimizer : {"sgd", "adamax"}
    lr, beta2, eps : float
        Optimiser parameters (Adamax with beta1 = 0).
    opt_state : list of dict or None
        Adamax state per layer, ``{"W": u_W, "b": u_b}`` (dense) or ``{"K": u_K, "b": u_b}`` (conv); updated
        in place and returned. None (or missing keys): start from zeros. SGD keeps no state (empty dicts).
    masks : list of (ndarray or None) or None
        Per layer, shape ``(T, n_out)`` multipliers (0 or 1/(1-p)) on the readout path only. None: no dropout.

    Returns
    -------
    dict
        ``spikes``: per layer (T, n_out) int, the (pooled) spikes sent to the readout and next layer;
        ``spikes_full``: per layer (T, n_full) int, the full-resolution spikes that drive R (dense: same as
        ``spikes``); ``u``: per layer (T, n_out) the (pooled) membrane potential; ``u_full``: per layer
        (T, n_full) the unpooled potential (dense: same as ``u``); ``y``: per layer (T, n_classes);
        ``loss``: per layer (T,) (all steps, burn-in included); ``err_signal``: per layer (T, n_out) the
        learning signal E on the readout path (0 during burn-in); ``err_full``: per layer (T, n_full), E
        routed to the max-pool winners (dense: same as ``err_signal``); ``p_in``: per layer (T, n_in) the
        presynaptic trace P each layer saw; ``opt_state``: the optimiser state (see above).
    """
    c = consts
    if learn and label is None:
        raise ValueError("learn=True needs a label")
    if burnin < 0:
        raise ValueError("burnin must be >= 0")
    for name, value, allowed in (
        ("loss", loss, LOSSES),
        ("surrogate", surrogate, SURROGATES),
        ("optimizer", optimizer, OPTIMIZERS),
    ):
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}")
    _check_chain(layers)
    n_layers = len(layers)
    counts = np.asarray(counts, dtype=float)
    n_steps = counts.shape[0]
    counts = counts.reshape(n_steps, -1)
    if counts.shape[1] != layers[0].n_in:
        raise ValueError(
            f"counts give {counts.shape[1]} inputs per step, the first layer takes {layers[0].n_in}"
        )
    if masks is None:
        masks = [None] * n_layers
    for l, m in enumerate(masks):
        if m is not None and np.shape(m) != (n_steps, layers[l].n_out):
            raise ValueError(f"mask {l} has shape {np.shape(m)}, expected {(n_steps, layers[l].n_out)}")

    is_conv = [isinstance(layer, ConvLayer) for layer in layers]
    # Units at full (unpooled) resolution: where R and the refractory spikes live.
    n_full = [
        int(np.prod(layer.full_shape)) if cv else layer.n_out
        for layer, cv in zip(layers, is_conv, strict=True)
    ]
    target = None
    if label is not None:
        if not 0 <= label < n_classes:
            raise ValueError(f"label {label} out of range for {n_classes} classes")
        target = np.zeros(n_classes)
        target[label] = 1.0

    if opt_state is None:
        opt_state = [{} for _ in layers]
    elif len(opt_state) != n_layers:
        raise ValueError(f"opt_state has {len(opt_state)} entries for {n_layers} layers")
    if optimizer == "adamax":
        # Adamax's u starts at 0 per parameter; a given state is continued (and updated in place).
        for st, layer, cv in zip(opt_state, layers, is_conv, strict=True):
            key, param = ("K", layer.K) if cv else ("W", layer.W)
            st.setdefault(key, np.zeros(param.shape))
            st.setdefault("b", np.zeros(layer.b.shape))
            if st[key].shape != param.shape or st["b"].shape != layer.b.shape:
                raise ValueError("opt_state arrays do not match the layer shapes")

    # State at sample start: all zero.
    q = [np.zeros(layer.n_in) for layer in layers]
    p = [np.zeros(layer.n_in) for layer in layers]
    r = [np.zeros(nf) for nf in n_full]
    s_prev = [np.zeros(nf) for nf in n_full]

    rec = {
        "spikes": [np.zeros((n_steps, layer.n_out), dtype=np.int64) for layer in layers],
        "spikes_full": [np.zeros((n_steps, nf), dtype=np.int64) for nf in n_full],
        "u": [np.zeros((n_steps, layer.n_out)) for layer in layers],
        "u_full": [np.zeros((n_steps, nf)) for nf in n_full],
        "y": [np.zeros((n_steps, n_classes)) for _ in layers],
        "loss": [np.full(n_steps, np.nan) for _ in layers],
        "err_signal": [np.zeros((n_steps, layer.n_out)) for layer in layers],
        "err_full": [np.zeros((n_steps, nf)) for nf in n_full],
        "p_in": [np.zeros((n_steps, layer.n_in)) for layer in layers],
    }
    # Scratch for the dense gradient, reused every step (a 500x2048 outer product per step is the cost).
    grad_buf = [None if cv else np.empty(layer.W.shape) for layer, cv in zip(layers, is_conv, strict=True)]

    for t in range(n_steps):
        s_in = counts[t]
        learn_now = learn and t >= burnin
        signal_now = target is not None and t >= burnin
        err_full_t = [None] * n_layers
        for l, layer in enumerate(layers):
            # P uses the OLD Q (one step of delay), so it is updated before Q.
            p[l] = c.alpha * p[l] + (1.0 - c.alpha) * q[l]
            q[l] = c.beta * q[l] + (1.0 - c.beta) * s_in
            r[l] = c.alpharp * r[l] - (1.0 - c.alpharp) * c.wrp * s_prev[l]
            if is_conv[l]:
                x = p[l].reshape(layer.in_shape)
                u_full = (
                    conv2d(x, layer.K, layer.padding)
                    + layer.b[:, None, None]
                    + r[l].reshape(layer.full_shape)
                )
                u_pool, winner = maxpool(u_full, layer.pool)
                u_full = u_full.ravel()
                u_out = u_pool.ravel()
            else:
                u_full = layer.W @ p[l] + layer.b + r[l]
                u_out = u_full
            s_full = (u_full > 0).astype(float)
            s_out = (u_out > 0).astype(float) if is_conv[l] else s_full
            s_prev[l] = s_full

            m = masks[l][t] if masks[l] is not None else None
            s_read = s_out if m is None else m * s_out
            y = layer.G @ s_read + layer.g

            rec["p_in"][l][t] = p[l]
            rec["u"][l][t] = u_out
            rec["u_full"][l][t] = u_full
            rec["spikes"][l][t] = s_out
            rec["spikes_full"][l][t] = s_full
            rec["y"][l][t] = y
            if target is not None:
                rec["loss"][l][t] = loss_value(y, target, loss)
            if signal_now:
                e = surrogate_grad(u_out, surrogate, slope, width) * (layer.G.T @ loss_grad(y, target, loss))
                if m is not None:
                    e = e * m
                if is_conv[l]:
                    e_full = maxpool_route(
                        e.reshape(layer.out_shape), winner, layer.full_shape, layer.pool
                    ).ravel()
                else:
                    e_full = e
                rec["err_signal"][l][t] = e
                rec["err_full"][l][t] = e_full
                err_full_t[l] = e_full
            # The next layer sees this layer's undropped spikes of the same step.
            s_in = s_out

        if learn_now:
            # Gradients use U[t], P[t]; the stepped weights first act on U[t+1].
            for l, layer in enumerate(layers):
                e_full = err_full_t[l]
                st = opt_state[l]
                if is_conv[l]:
                    e3 = e_full.reshape(layer.full_shape)
                    gk = conv2d_kernel_grad(
                        p[l].reshape(layer.in_shape), e3, layer.K.shape[2], layer.K.shape[3], layer.padding
                    )
                    gb = e3.sum(axis=(1, 2))
                    optimizer_step(layer.K, gk, st.get("K"), optimizer, lr, beta2, eps)
                else:
                    gw = np.multiply.outer(e_full, p[l], out=grad_buf[l])
                    gb = e_full.copy()
                    optimizer_step(layer.W, gw, st.get("W"), optimizer, lr, beta2, eps)
                optimizer_step(layer.b, gb, st.get("b"), optimizer, lr, beta2, eps)

    rec["opt_state"] = opt_state
    return rec


# --------------------------------------------------------------------------------------------------------
# Evaluation and initialisation
# --------------------------------------------------------------------------------------------------------


def majority_vote(y: np.ndarray, burnin: int) -> int:
    """Prediction of one sample: the most frequent per-step argmax of ``y[t]`` over ``t >= burnin``.

    Ties between classes go to the smallest class index (so does ``argmax`` within one step).

    Parameters
    ----------
    y : ndarray, shape (T, C)
    burnin : int

    Returns
    -------
    int
    """
    y = np.asarray(y)
    if burnin >= y.shape[0]:
        raise ValueError(f"burnin {burnin} leaves no steps of {y.shape[0]} to vote")
    votes = np.bincount(np.argmax(y[burnin:], axis=1), minlength=y.shape[1])
    return int(np.argmax(votes))


def evaluate(layers: list, samples, labels, **kw) -> np.ndarray:
    """Accuracy per layer by majority vote over steps ``t >= burnin`` (no learning, no dropout).

    Parameters
    ----------
    layers : list of DenseLayer or ConvLayer
    samples : sequence of ndarray
        Input counts per sample, each as :func:`run_sample` takes them.
    labels : sequence of int
    **kw
        Passed to :func:`run_sample` (``n_classes`` is required; ``burnin`` also sets the vote window).
        ``learn``, ``masks`` and ``opt_state`` must not be given (evaluation never learns).

    Returns
    -------
    ndarray, shape (n_layers,)
        Fraction of samples each layer's readout classifies correctly.
    """
    for key in ("learn", "masks", "opt_state"):
        if kw.get(key) not in (None, False):
            raise ValueError(f"evaluate does not take {key}={kw[key]!r}")
        kw.pop(key, None)
    burnin = kw.get("burnin", 0)
    labels = np.asarray(labels)
    correct = np.zeros(len(layers))
    for x, lab in zip(samples, labels, strict=True):
        out = run_sample(layers, x, None, learn=False, **kw)
        correct += [majority_vote(y, burnin) == lab for y in out["y"]]
    return correct / len(labels)


def init_layers(
    sizes: list[int], n_classes: int, rng: np.random.Generator, lc_ampl: float = 0.5
) -> list[DenseLayer]:
    """Dense layers initialised as the reference (``torch.nn.Linear`` default and a fixed readout).

    Per layer, drawn in this order from ``rng``: ``W`` (n_out, n_in) and ``b`` (n_out,) uniform in
    ``+-1/sqrt(n_in)``; ``G`` (n_classes, n_out) and ``g`` (n_classes,) uniform in ``+-lc_ampl/sqrt(n_out)``.

    Parameters
    ----------
    sizes : list of int
        ``[n_in, n_1, n_2, ...]``.
    n_classes : int
    rng : numpy.random.Generator
    lc_ampl : float

    Returns
    -------
    list of DenseLayer
    """
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        bw = 1.0 / np.sqrt(n_in)
        W = rng.uniform(-bw, bw, size=(n_out, n_in))
        b = rng.uniform(-bw, bw, size=n_out)
        bg = lc_ampl / np.sqrt(n_out)
        G = rng.uniform(-bg, bg, size=(n_classes, n_out))
        g = rng.uniform(-bg, bg, size=n_classes)
        layers.append(DenseLayer(W=W, b=b, G=G, g=g))
    return layers


def init_conv_layer(
    in_shape: tuple[int, int, int],
    c_out: int,
    kernel: int,
    n_classes: int,
    rng: np.random.Generator,
    *,
    padding: int = 0,
    pool: int = 1,
    lc_ampl: float = 0.5,
) -> ConvLayer:
    """A conv layer initialised as ``torch.nn.Conv2d`` (``+-1/sqrt(c_in kernel^2)``) with a fixed readout.

    Drawn in this order: ``K`` (c_out, c_in, kernel, kernel), ``b`` (c_out,), then ``G``, ``g`` uniform in
    ``+-lc_ampl/sqrt(n_pooled)`` where ``n_pooled`` is the number of pooled outputs.
    """
    c_in = in_shape[0]
    bw = 1.0 / np.sqrt(c_in * kernel * kernel)
    K = rng.uniform(-bw, bw, size=(c_out, c_in, kernel, kernel))
    b = rng.uniform(-bw, bw, size=c_out)
    layer = ConvLayer(
        K=K,
        b=b,
        G=np.zeros((n_classes, 0)),
        g=np.zeros(n_classes),
        padding=padding,
        pool=pool,
        in_shape=tuple(in_shape),
    )
    n_out = layer.n_out
    if n_out == 0:
        raise ValueError(
            f"conv layer on {in_shape} with kernel {kernel}, padding {padding}, pool {pool} is empty"
        )
    bg = lc_ampl / np.sqrt(n_out)
    layer.G = rng.uniform(-bg, bg, size=(n_classes, n_out))
    layer.g = rng.uniform(-bg, bg, size=n_classes)
    return layer
