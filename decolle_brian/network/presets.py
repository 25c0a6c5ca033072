"""Published DECOLLE networks as :class:`~decolle_brian.network.spec.NetworkSpec` (until run configs exist).

Both follow the reference package (nmi-lab/decolle-public, ``LenetDECOLLE`` with
``scripts/parameters/params_dvsgestures_torchneuromorphic.yml`` and ``params_nmnist.yml``): input 2x32x32
event counts per 1 ms step; three conv LIF layers of 64, 128, 128 channels, 7x7 kernels with padding
``(7 - 1) // 2 = 3`` (the reference pads to keep the feature size), max-pool on U before the spike of 2, 1, 2;
a fixed random local readout on every layer's pooled spikes; SmoothL1 loss; Adamax with betas (0, 0.95);
dropout 0.5 on the readout path; alpha 0.97, beta 0.92, alpharp 0.65, wrp 1.

Shapes: 2x32x32 -> full 64x32x32, pooled 64x16x16 -> 128x16x16 (pool 1) -> full 128x16x16, pooled 128x8x8.
"""

from __future__ import annotations

from decolle_brian.network.spec import ConvLayerSpec, LearningSpec, NetworkSpec, NeuronParams

INPUT_SHAPE = (2, 32, 32)
CHANNELS = (64, 128, 128)
KERNEL = 7
POOLS = (2, 1, 2)


def conv_stack(input_shape: tuple[int, int, int], channels, kernel: int, pools, padding: int | None = None) -> tuple:
    """Conv layer specs chained from ``input_shape`` (each layer's ``in_shape`` is the previous ``out_shape``).

    ``padding`` defaults to ``(kernel - 1) // 2`` (same-size convolution, as the reference).
    """
    padding = (kernel - 1) // 2 if padding is None else padding
    layers, shape = [], tuple(input_shape)
    for c_out, pool in zip(channels, pools, strict=True):
        layer = ConvLayerSpec(channels=c_out, kernel=kernel, in_shape=shape, padding=padding, pool=pool)
        layers.append(layer)
        shape = layer.out_shape
    return tuple(layers)


def dvsgesture_spec(**learning) -> NetworkSpec:
    """DvsGesture: conv 64-128-128 (7x7, pad 3, pools 2, 1, 2), 11 classes, burn-in 100 steps.

    Reference hyperparameters (``params_dvsgestures_torchneuromorphic.yml``): Adamax lr 3.6e-4, betas
    (0, 0.95); readout scale ``lc_ampl = 2.0``; burn-in 100; dropout 0.5 (the training script's default);
    train chunks of 500 steps (random start), test 1800; the reference divides lr by 5 * (epoch // 30) (not
    part of a spec). Keyword arguments override :class:`LearningSpec` fields.

    Not included: ``train_lenet_decolle.py`` builds the net with ``with_output_layer=True`` (a fourth, dense
    11-unit LIF layer trained with cross-entropy, despite ``with_output_layer: False`` in the yml) and calls
    the data-driven ``init_parameters``; this spec is the three conv layers with local readouts.
    """
    defaults = dict(loss="smoothl1", surrogate="fast_sigmoid", optimizer="adamax", lr=3.6e-4, beta2=0.95,
                    eps=1e-8, dropout=0.5, lc_ampl=2.0, burnin=100)
    return NetworkSpec(
        n_inputs=2 * 32 * 32, input_shape=INPUT_SHAPE, layers=conv_stack(INPUT_SHAPE, CHANNELS, KERNEL, POOLS),
        n_classes=11, neuron=NeuronParams(alpha=0.97, beta=0.92, alpharp=0.65, wrp=1.0),
        learning=LearningSpec(**{**defaults, **learning}),
    )


def nmnist_conv_spec(**learning) -> NetworkSpec:
    """N-MNIST, current reference config: conv 64-128-128 (7x7, pad 3, pools 2, 1, 2), 10 classes, burn-in 60.

    ``params_nmnist.yml``: Adamax betas (0, 0.95), ``lc_ampl = 0.5``, burn-in 60, chunks of 300 steps. Its
    ``learning_rate`` field reads 1e-9 next to ``random_tau: true`` and a data-driven init; we use 1e-3 as
    docs/model.md records for N-MNIST. Keyword arguments override :class:`LearningSpec` fields.
    """
    defaults = dict(loss="smoothl1", surrogate="fast_sigmoid", optimizer="adamax", lr=1e-3, beta2=0.95,
                    eps=1e-8, dropout=0.5, lc_ampl=0.5, burnin=60)
    return NetworkSpec(
        n_inputs=2 * 32 * 32, input_shape=INPUT_SHAPE, layers=conv_stack(INPUT_SHAPE, CHANNELS, KERNEL, POOLS),
        n_classes=10, neuron=NeuronParams(alpha=0.97, beta=0.92, alpharp=0.65, wrp=1.0),
        learning=LearningSpec(**{**defaults, **learning}),
    )
