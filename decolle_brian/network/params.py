"""Learned and fixed parameters of a DECOLLE network as plain NumPy arrays.

Names are ``layer<l>.<name>`` (l = 1 for the first hidden layer): ``W`` (n_out, n_in) or, for conv layers,
the kernel ``K``; ``b`` (n_out,); the fixed readout ``G`` (n_classes, n_out) and ``g`` (n_classes,); Adamax
state ``v_W`` / ``v_K`` and ``v_b``. Arrays, not Brian objects: they are checkpointed, compared with the
NumPy reference, and handed to any compiled network of the same structure.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from decolle_brian.network.spec import NetworkSpec


def _layer_shapes(spec: NetworkSpec):
    """Per layer: (key ``layer<l>``, name of its weights ``W`` or ``K``, their shape, number of biases, fan-in)."""
    fan_in = spec.n_inputs
    for index, layer in enumerate(spec.layers, start=1):
        if layer.kind == "conv":
            yield f"layer{index}", "K", layer.kernel_shape, layer.channels, math.prod(layer.kernel_shape[1:])
        else:
            yield f"layer{index}", "W", (layer.n, fan_in), layer.n, fan_in
        fan_in = layer.n


def init_params(spec: NetworkSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw initial parameters.

    W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's default for nn.Linear, as the reference); a conv
    layer's kernel K (c_out, c_in, k, k) and bias b (c_out,) likewise with fan_in = c_in k k (nn.Conv2d);
    readout G, g ~ U(-lc_ampl/sqrt(n_out), lc_ampl/sqrt(n_out)) (n_out: pooled units), fixed for the whole run.
    Adamax state starts at zero. Draw order per layer: W or K, b, G, g (as the reference's initialisers).
    """
    params: dict[str, np.ndarray] = {}
    lc_ampl = spec.learning.lc_ampl
    for (key, name, shape, n_bias, fan_in), layer in zip(_layer_shapes(spec), spec.layers, strict=True):
        bound = 1.0 / np.sqrt(fan_in)
        params[f"{key}.{name}"] = rng.uniform(-bound, bound, shape)
        params[f"{key}.b"] = rng.uniform(-bound, bound, n_bias)
        readout_bound = lc_ampl / np.sqrt(layer.n)
        params[f"{key}.G"] = rng.uniform(-readout_bound, readout_bound, (spec.n_classes, layer.n))
        params[f"{key}.g"] = rng.uniform(-readout_bound, readout_bound, spec.n_classes)
        if spec.learning.optimizer == "adamax":
            params[f"{key}.v_{name}"] = np.zeros(shape)
            params[f"{key}.v_b"] = np.zeros(n_bias)
    return params


def expected_shapes(spec: NetworkSpec) -> dict[str, tuple[int, ...]]:
    """Shape of every parameter array of ``spec`` (those :func:`init_params` draws, in its order)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for (key, name, shape, n_bias, _), layer in zip(_layer_shapes(spec), spec.layers, strict=True):
        shapes.update({f"{key}.{name}": tuple(shape), f"{key}.b": (n_bias,),
                       f"{key}.G": (spec.n_classes, layer.n), f"{key}.g": (spec.n_classes,)})
        if spec.learning.optimizer == "adamax":
            shapes.update({f"{key}.v_{name}": tuple(shape), f"{key}.v_b": (n_bias,)})
    return shapes


def check_params(spec: NetworkSpec, params: dict[str, np.ndarray],
                 known_finite: Callable[[np.ndarray], bool | None] | None = None) -> None:
    """Raise ValueError naming any missing, extra, wrongly shaped or non-finite parameter; ``known_finite(value)``
    says whether a value is all finite where that is already known (True / False), else None (then it is looked at
    here)."""
    shapes = expected_shapes(spec)
    missing = sorted(set(shapes) - set(params))
    extra = sorted(set(params) - set(shapes))
    if missing or extra:
        raise ValueError(f"Parameters do not fit the network: missing {missing}, unexpected {extra}")
    for key, shape in shapes.items():
        value = np.asarray(params[key])
        if value.shape != shape:
            raise ValueError(f"Parameter '{key}' has shape {value.shape}, the network needs {shape}")
        finite = known_finite(value) if known_finite is not None else None
        if not (np.all(np.isfinite(value)) if finite is None else finite):
            raise ValueError(f"Parameter '{key}' contains NaN or infinite values")
