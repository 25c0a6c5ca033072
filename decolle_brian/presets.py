"""Published DECOLLE networks as :class:`~decolle_brian.network.spec.NetworkSpec`, read from the shipped runs.

The run configurations ``runs/dvsgesture.toml`` and ``runs/nmnist_conv.toml`` are the one statement of these
networks (their comments give the sources: nmi-lab/decolle-public, ``LenetDECOLLE`` with
``params_dvsgestures_torchneuromorphic.yml`` and ``params_nmnist.yml``); this module builds their specs
without opening a data set: input 2x32x32 event counts per 1 ms step (DvsGesture's 128x128 sensor summed 4x4,
N-MNIST's 34x34 cropped), 11 and 10 classes.

Shapes: 2x32x32 -> full 64x32x32, pooled 64x16x16 -> 128x16x16 (pool 1) -> full 128x16x16, pooled 128x8x8.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from decolle_brian.config import load_config, network_spec
from decolle_brian.equations_io import shipped_folder
from decolle_brian.network.spec import NetworkSpec

INPUT_SHAPE = (2, 32, 32)


def runs_dir() -> Path:
    """Folder of the shipped run configurations: the installed ``decolle_brian.runs`` or the source tree."""
    return shipped_folder("decolle_brian.runs", "runs", "dvsgesture.toml")


def run_spec(name: str, n_classes: int, input_shape: tuple[int, int, int] = INPUT_SHAPE, **learning) -> NetworkSpec:
    """The network of the shipped run configuration ``runs/<name>.toml``.

    Keyword arguments override :class:`~decolle_brian.network.spec.LearningSpec` fields.
    """
    config = load_config(runs_dir() / f"{name}.toml")
    n_inputs = input_shape[0] * input_shape[1] * input_shape[2]
    spec = network_spec(config, n_inputs, n_classes, input_shape)
    return replace(spec, learning=replace(spec.learning, **learning)) if learning else spec


def dvsgesture_spec(**learning) -> NetworkSpec:
    """DvsGesture (``runs/dvsgesture.toml``): conv 64-128-128 (7x7, pad 3, pools 2, 1, 2), 11 classes, burn-in 100.

    Not included: the reference's ``train_lenet_decolle.py`` builds the net with ``with_output_layer=True`` (a
    fourth, dense 11-unit LIF layer trained with cross-entropy, despite ``with_output_layer: False`` in the
    yml) and calls the data-driven ``init_parameters``; this spec is the three conv layers with local readouts.
    """
    return run_spec("dvsgesture", 11, **learning)


def nmnist_conv_spec(**learning) -> NetworkSpec:
    """N-MNIST (``runs/nmnist_conv.toml``): conv 64-128-128 (7x7, pad 3, pools 2, 1, 2), 10 classes, burn-in 60."""
    return run_spec("nmnist_conv", 10, **learning)
