"""Spike encoders turning a static intensity image into event counts per 1 ms step.

All encoders take an image with values in [0, 1] and return ``float32`` counts of shape
``(n_steps, channels, height, width)``. Randomness comes only from the ``rng`` passed in, so the
same generator seed always gives the same events.

* :func:`poisson_encode` -- rate code: each step a pixel spikes with probability
  ``intensity * max_rate_hz * dt``.
* :func:`latency_encode` -- time to first spike: one spike per pixel above a threshold, brighter
  pixels earlier.
* :func:`saccade_encode` -- N-MNIST-style emulation: the image moves along the N-MNIST triangle of
  three saccades in front of a simple DVS pixel model (log-intensity change beyond a contrast
  threshold emits ON / OFF events; channel 0 = OFF, channel 1 = ON, as for N-MNIST polarity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from decolle_brian.errors import ParamError

ENCODERS = ("poisson", "latency", "saccade")

#: Default parameters of each encoder (also the valid keyword arguments).
ENCODER_DEFAULTS: dict[str, dict[str, Any]] = {
    "poisson": {"max_rate_hz": 200.0},
    "latency": {"threshold": 0.2, "t_max": None},
    "saccade": {
        "saccade_ms": 100.0,
        "amplitude": 7.0,
        "contrast_threshold": 0.5,
        "threshold_sigma": 0.03,
        "log_eps": 0.1,
        "margin": 3,
        "invert": True,
    },
}
#: Default T per encoder.
DEFAULT_STEPS = {"poisson": 100, "latency": 100, "saccade": 300}
CROPS = ("center", "corner", None)

# Vertices (x, y) of the N-MNIST saccade triangle, in units of the amplitude (the sensor went
# (0,0) -> (3.5,7) -> (7,0) -> (0,0) pixels, ~105 ms per leg; see tonic.datasets.nmnist.stabilize).
_TRIANGLE = np.array([[0.0, 0.0], [0.5, 1.0], [1.0, 0.0], [0.0, 0.0]])


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D (height, width) image, got shape {img.shape}")
    if img.size and (img.min() < 0 or img.max() > 1):
        raise ValueError("image intensities must lie in [0, 1]; scale the image first")
    return img


def _check_poisson(n_steps: int, max_rate_hz: float = 200.0) -> None:
    if not 0 <= max_rate_hz <= 1000:
        raise ParamError(f"max_rate_hz must be in [0, 1000] (at most one spike per 1 ms step), got {max_rate_hz}")


def _check_latency(n_steps: int, threshold: float = 0.2, t_max: int | None = None) -> None:
    if not 0 <= threshold < 1:
        raise ParamError(f"threshold must be in [0, 1), got {threshold}")
    if t_max is not None and not 0 <= int(t_max) < n_steps:
        raise ParamError(f"t_max must be in [0, n_steps - 1] = [0, {n_steps - 1}], got {t_max}")


def _check_saccade(n_steps: int, contrast_threshold: float = 0.5, **_) -> None:
    if contrast_threshold <= 0:
        raise ParamError(f"contrast_threshold must be > 0, got {contrast_threshold}")


#: each encoder's value checks: run by the encoder and, before any sample is encoded, by :func:`resolve_encoder`
#: (so a data set with a bad value fails when it is opened, not at its first sample)
VALUE_CHECKS = {"poisson": _check_poisson, "latency": _check_latency, "saccade": _check_saccade}


def poisson_encode(image: np.ndarray, n_steps: int, rng: np.random.Generator, max_rate_hz: float = 200.0) -> np.ndarray:
    """Rate code: Bernoulli spikes per 1 ms step with probability ``intensity * max_rate_hz / 1000``.

    Parameters
    ----------
    image : numpy.ndarray
        Intensities in [0, 1], shape ``(H, W)``.
    n_steps : int
        Number of 1 ms steps T.
    rng : numpy.random.Generator
        Source of randomness (seeded by the caller).
    max_rate_hz : float
        Firing rate of a pixel of intensity 1; at most 1000 Hz (one spike per step).

    Returns
    -------
    numpy.ndarray
        ``float32`` counts (0 or 1), shape ``(n_steps, 1, H, W)``.
    """
    img = _check_image(image)
    _check_poisson(n_steps, max_rate_hz)
    p = img * (max_rate_hz * 1e-3)
    spikes = rng.random((n_steps, 1, *img.shape)) < p
    return spikes.astype(np.float32)


def latency_encode(
    image: np.ndarray,
    n_steps: int,
    rng: np.random.Generator | None = None,
    threshold: float = 0.2,
    t_max: int | None = None,
) -> np.ndarray:
    """Time-to-first-spike code: one spike per pixel brighter than ``threshold``.

    The spike step falls linearly from 0 (intensity 1) to ``t_max`` (intensity at the threshold).

    Parameters
    ----------
    image : numpy.ndarray
        Intensities in [0, 1], shape ``(H, W)``.
    n_steps : int
        Number of 1 ms steps T.
    rng : numpy.random.Generator, optional
        Unused (the code is deterministic); accepted for a uniform encoder signature.
    threshold : float
        Pixels with intensity ``<= threshold`` never spike.
    t_max : int, optional
        Latest spike step (default ``n_steps - 1``).

    Returns
    -------
    numpy.ndarray
        ``float32`` counts, shape ``(n_steps, 1, H, W)``.
    """
    img = _check_image(image)
    _check_latency(n_steps, threshold, t_max)
    t_max = n_steps - 1 if t_max is None else int(t_max)
    out = np.zeros((n_steps, 1, *img.shape), dtype=np.float32)
    ys, xs = np.nonzero(img > threshold)
    steps = np.rint((1.0 - img[ys, xs]) / (1.0 - threshold) * t_max).astype(np.int64)
    out[np.clip(steps, 0, t_max), 0, ys, xs] = 1.0
    return out


def saccade_path(n_frames: int, saccade_ms: float = 100.0, amplitude: float = 7.0) -> np.ndarray:
    """Image offset (x, y) in pixels at times 0, 1, ..., ``n_frames - 1`` ms.

    Three straight saccades of ``saccade_ms`` each along the N-MNIST triangle
    (0, 0) -> (A/2, A) -> (A, 0) -> (0, 0); the pattern repeats for longer samples.

    Parameters
    ----------
    n_frames : int
    saccade_ms : float
    amplitude : float
        A, the largest displacement in pixels (7 for N-MNIST).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_frames, 2)``.
    """
    t = np.arange(n_frames) / saccade_ms
    leg = np.floor(t).astype(np.int64) % 3
    frac = (t - np.floor(t))[:, None]
    pts = _TRIANGLE * amplitude
    return pts[leg] + frac * (pts[leg + 1] - pts[leg])


def saccade_encode(
    image: np.ndarray,
    n_steps: int,
    rng: np.random.Generator,
    saccade_ms: float = 100.0,
    amplitude: float = 7.0,
    contrast_threshold: float = 0.5,
    threshold_sigma: float = 0.03,
    log_eps: float = 0.1,
    margin: int = 3,
    invert: bool = True,
) -> np.ndarray:
    """N-MNIST-style events: move the image along three saccades in front of a DVS pixel model.

    The image is placed on a sensor ``margin`` pixels larger on every side (28x28 -> 34x34, as
    N-MNIST), shifted with bilinear interpolation along :func:`saccade_path`, and each sensor pixel
    emits ``floor(|log(I + eps) - ref| / C)`` ON (brighter) or OFF (darker) events per step, moving its
    reference level ``ref`` by the same amount. ``C`` is ``contrast_threshold`` with per-pixel
    mismatch ``N(1, threshold_sigma)`` drawn from ``rng``. Only moving edges give events: a blank
    image gives none. The default threshold gives about as many events as the real N-MNIST
    recording of the same digit (MNIST train images 0-4: 4370, 4866, 3558, 2448, 3902 events here;
    4681, 5028, 3307, 2723, 3913 in N-MNIST).

    Parameters
    ----------
    image : numpy.ndarray
        Intensities in [0, 1], shape ``(H, W)``.
    n_steps : int
        Number of 1 ms steps T (300 = three saccades of 100 ms).
    rng : numpy.random.Generator
        Source of the threshold mismatch.
    saccade_ms : float
        Duration of one saccade.
    amplitude : float
        Largest displacement in pixels.
    contrast_threshold : float
        Log-intensity change per event.
    threshold_sigma : float
        Relative standard deviation of the per-pixel threshold (0 = identical pixels).
    log_eps : float
        Offset inside the logarithm (dark pixels are not infinitely sensitive).
    margin : int
        Sensor border around the image, pixels.
    invert : bool
        Show the image dark on a bright background (``1 - image``). This reproduces the polarity
        pattern of the real N-MNIST recordings, where ON events trail the moving strokes and OFF
        events lead them (measured on the shared N-MNIST files); ``False`` shows it bright on dark.

    Returns
    -------
    numpy.ndarray
        ``float32`` counts, shape ``(n_steps, 2, H + 2 margin, W + 2 margin)``; channel 0 OFF, 1 ON.
    """
    img = _check_image(image)
    _check_saccade(n_steps, contrast_threshold=contrast_threshold)
    h, w = img.shape
    hs, ws = h + 2 * margin, w + 2 * margin
    path = saccade_path(n_steps + 1, saccade_ms, amplitude)
    # Frame k shows the image with its top-left corner at margin + path[k] - amplitude / 2: the
    # measured motion of the digits in the real N-MNIST recordings (down-right first), centred.
    off = margin + path - amplitude / 2.0
    rows, cols = np.mgrid[0:hs, 0:ws].astype(np.float64)
    src_r = rows[None] - off[:, 1, None, None]
    src_c = cols[None] - off[:, 0, None, None]
    frames = ndimage.map_coordinates(img, [src_r.ravel(), src_c.ravel()], order=1, mode="constant", cval=0.0)
    frames = frames.reshape(n_steps + 1, hs, ws)
    if invert:
        frames = 1.0 - frames
    log_i = np.log(frames + log_eps)
    thr = contrast_threshold * np.clip(1.0 + threshold_sigma * rng.standard_normal((hs, ws)), 0.25, None)
    ref = log_i[0].copy()
    out = np.zeros((n_steps, 2, hs, ws), dtype=np.float32)
    for k in range(n_steps):
        # Small tolerance so exact multiples of the threshold do not depend on rounding.
        n = np.trunc((log_i[k + 1] - ref) / thr + np.copysign(1e-9, log_i[k + 1] - ref))
        out[k, 1] = np.maximum(n, 0)
        out[k, 0] = np.maximum(-n, 0)
        ref += n * thr
    return out


def resolve_encoder(encoder: str, n_steps: int | None, params: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """Validate an encoder name and its parameters, filling in defaults.

    Parameters
    ----------
    encoder : str
        One of :data:`ENCODERS`.
    n_steps : int or None
        T; ``None`` picks :data:`DEFAULT_STEPS` of the encoder.
    params : dict
        Encoder parameters (``None`` values mean "default").

    Returns
    -------
    tuple
        ``(encoder, n_steps, params)`` with every parameter of the encoder filled in.
    """
    if encoder not in ENCODERS:
        raise ParamError(f"unknown encoder {encoder!r}; valid encoders: {', '.join(ENCODERS)}")
    defaults = ENCODER_DEFAULTS[encoder]
    given = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ParamError(
            f"parameter(s) {', '.join(unknown)} do not apply to encoder {encoder!r}; "
            f"its parameters: {', '.join(defaults)}"
        )
    n_steps = DEFAULT_STEPS[encoder] if n_steps is None else int(n_steps)
    if n_steps < 1:
        raise ParamError(f"n_steps must be >= 1, got {n_steps}")
    params = {**defaults, **given}
    VALUE_CHECKS[encoder](n_steps, **params)
    return encoder, n_steps, params


def crop_center(counts: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Crop the last two axes of ``counts`` to their centre ``size`` (e.g. 34x34 -> 32x32)."""
    h, w = counts.shape[-2:]
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return counts[..., top : top + size[0], left : left + size[1]]


def _crop(counts: np.ndarray, crop: str | None) -> np.ndarray:
    if crop is None:
        return counts
    h, w = counts.shape[-2:]
    if crop == "center":
        return crop_center(counts, (h - 2, w - 2))
    return counts[..., : h - 2, : w - 2]


def encoder_output_shape(
    encoder: str, image_shape: Sequence[int], params: dict[str, Any], crop: str | None = None
) -> tuple[int, ...]:
    """Per-step shape ``(channels, height, width)`` produced by an encoder.

    Parameters
    ----------
    encoder : str
    image_shape : sequence of int
        ``(H, W)`` of the input image.
    params : dict
        Resolved encoder parameters.
    crop : {"center", "corner", None}
        Saccade only: drop 2 pixels per axis (centre: one per border; corner: the last two).

    Returns
    -------
    tuple of int
    """
    h, w = image_shape
    if encoder != "saccade":
        return (1, h, w)
    if crop not in CROPS:
        raise ParamError(f"invalid crop {crop!r}; valid values: {CROPS}")
    m = int(params["margin"])
    cut = 0 if crop is None else 2
    return (2, h + 2 * m - cut, w + 2 * m - cut)


def encode_image(
    image: np.ndarray,
    encoder: str,
    n_steps: int,
    rng: np.random.Generator,
    params: dict[str, Any],
    crop: str | None = None,
) -> np.ndarray:
    """Encode one image with a named encoder.

    Parameters
    ----------
    image : numpy.ndarray
        Intensities in [0, 1], shape ``(H, W)``.
    encoder : str
        One of :data:`ENCODERS`.
    n_steps : int
    rng : numpy.random.Generator
    params : dict
        Encoder parameters (see :data:`ENCODER_DEFAULTS`).
    crop : {"center", "corner", None}
        Saccade only, see :func:`encoder_output_shape`.

    Returns
    -------
    numpy.ndarray
        ``float32`` counts, shape ``(n_steps, *encoder_output_shape(...))``.
    """
    if encoder == "poisson":
        return poisson_encode(image, n_steps, rng, **params)
    if encoder == "latency":
        return latency_encode(image, n_steps, rng, **params)
    if encoder == "saccade":
        return np.ascontiguousarray(_crop(saccade_encode(image, n_steps, rng, **params), crop))
    raise ParamError(f"unknown encoder {encoder!r}; valid encoders: {', '.join(ENCODERS)}")
