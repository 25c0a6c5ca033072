r"""Batched dense layers (``NetworkSpec.batch_size = B > 1``, mode "exact"): B samples side by side, one weight set.

Every layer holds B x n units, one copy of each neuron per sample; the weights W (n, n_in) and biases b are
stored once and shared by the B copies. Per sample b and step t (docs/batch.md)::

    U_bj[t] = sum_i W_ji P_bi[t] + b_j + R_bj[t]                 forward, one weight array for every sample
    E_bj[t] = (derived learning signal of sample b) / B           the batch-mean loss: its dL/dy carries 1/B
    g_ji    = sum_b E_bj[t] P_bi[t],   g_bias_j = sum_b E_bj[t]    the gradient of the batch mean
    one optimiser step (the derived rule's) on g per step

A dense layer of n neurons over n_in inputs, batched, IS a 1 x 1 convolution with n output channels over an
"image" of n_in channels, 1 row and B columns (the batch): ``U[j, 0, b] = sum_i K[j, i, 0, 0] P[i, 0, b]``.
So a batched dense layer is built by the conv layer builder (:mod:`decolle_brian.network.conv`) on that
geometry, kernel size 1, no padding, no pooling: its shared kernel group holds W, its summed kernel gradient
is the sum over the batch, its bias gradient the sum over the batch, and on C++ standalone its two summed
variables run as the conv loops of generated code (:mod:`decolle_brian.backends.conv_loops`; the innermost
loop runs over the batch), while the runtime device uses the explicit list of one synapse per (weight,
sample) reading the shared weight by index. Nothing of the rule is written here: the statements are the
derived conv code of the same rule, which for kernel size 1 and pool 1 is the dense rule.

Unit layout (C order of the conv image): unit j of sample b is ``j * B + b`` in every layer, the input group
(``i * B + b``) and the readout (class k of sample b: ``k * B + b``). :func:`to_units` and :func:`from_units`
convert per-sample arrays ``(steps, B, n)`` to and from that layout.
"""

from __future__ import annotations

import numpy as np

from decolle_brian.network.chunks import ChunkInputs, DropoutMasks, EventCounts
from decolle_brian.network.conv import ConvLayerBuilder, ConvLayerObjects
from decolle_brian.network.registry import layer_builder
from decolle_brian.network.spec import ConvLayerSpec

#: layer kind under which the batched dense builder is registered (NetworkSpec.batch_size > 1)
BATCHED_DENSE = "dense (batched)"


def to_units(values: np.ndarray) -> np.ndarray:
    """Per-sample values ``(steps, B, n)`` -> the network's unit layout ``(steps, n * B)`` (unit j*B + b)."""
    values = np.asarray(values)
    if values.ndim != 3:
        raise ValueError(f"expected per-sample values of shape (steps, batch, n), got {values.shape}")
    return np.ascontiguousarray(values.transpose(0, 2, 1)).reshape(values.shape[0], -1)


def from_units(values: np.ndarray, batch_size: int) -> np.ndarray:
    """The network's unit layout ``(steps, n * B)`` -> per-sample values ``(steps, B, n)``."""
    values = np.asarray(values)
    steps, units = values.shape
    if units % batch_size:
        raise ValueError(f"{units} units are not a whole number of samples of a batch of {batch_size}")
    return values.reshape(steps, units // batch_size, batch_size).transpose(0, 2, 1)


def batch_geometry(n: int, n_in: int, batch_size: int) -> ConvLayerSpec:
    """The 1 x 1 convolution over the batch that a batched dense layer (n neurons, n_in inputs) is."""
    return ConvLayerSpec(channels=n, kernel=1, in_shape=(n_in, 1, batch_size), padding=0, pool=1)


@layer_builder("exact", BATCHED_DENSE)
class BatchedDenseLayerBuilder(ConvLayerBuilder):
    """A dense layer of ``batch_size`` samples side by side: the conv builder on :func:`batch_geometry`.

    Its parameters are bound under the dense names (``layer<l>.W`` of shape (n, n_in), ``v_W``), so the
    parameter arrays of a batched network are those of the online one.
    """

    #: the batch is already the columns of :func:`batch_geometry`: the conv builder's own batch axis stays 1
    samples = 1

    def build(self) -> ConvLayerObjects:
        net, dense = self.net, self.layer
        batch = net.spec.batch_size
        n_in = len(self.source) // batch
        self.layer = batch_geometry(dense.n, n_in, batch)
        objects = super().build()
        prefix = f"layer{self.index}"
        for name in ("K", "v_K"):
            binding = net.bindings.pop(f"{prefix}.{name}", None)
            if binding is None:
                continue
            binding.to_brian = lambda a: np.asarray(a).ravel()  # W[j, i] is K[j, i, 0, 0]: the same C order
            binding.from_brian = lambda v, shape=(dense.n, n_in): v.reshape(shape)
            net.bindings[f"{prefix}.{name.replace('K', 'W')}"] = binding
        return objects


def pack_batch(
    samples: list[tuple[np.ndarray, int]],
    chunk_steps: int,
    n_classes: int,
    *,
    lr: float,
    burnin: int,
    learn: bool,
    dropout: float,
    layer_sizes: list[int],
    rng: np.random.Generator | None = None,
) -> ChunkInputs:
    """Lay a batch of B samples (counts (T, n_inputs), label), all of T steps, side by side into one run.

    The batched counterpart of :func:`decolle_brian.network.chunks.pack_chunk`: every sample starts at step 0
    (all state is reset there), the steps after T are padding (a fresh start, no input, no learning), and every
    per-unit array is in the network's unit layout (:func:`to_units`). The counts are an
    :class:`~decolle_brian.network.chunks.EventCounts` (their non-zero entries; ``np.asarray`` gives the dense
    ``(chunk_steps, n_inputs * B)`` array). Dropout masks are drawn per sample,
    ``rng.random((chunk_steps, B, n)) >= dropout`` per layer, only when ``learn`` and ``dropout > 0``.
    """
    if not samples:
        raise ValueError("a batch needs at least one sample")
    lengths = {np.shape(counts)[0] for counts, _ in samples}
    if len(lengths) != 1:
        raise ValueError(f"the samples of a batch must have one length, got {sorted(lengths)}")
    (length,) = lengths
    if length > chunk_steps:
        raise ValueError(f"Samples have {length} steps, more than the chunk length {chunk_steps}")
    n_batch = len(samples)
    n_inputs = np.shape(samples[0][0])[1]
    for sample_counts, _ in samples:
        if np.ndim(sample_counts) != 2 or np.shape(sample_counts)[1] != n_inputs:
            raise ValueError(f"Sample counts must be (T, {n_inputs}), got {np.shape(sample_counts)}")
    # The events only (counts are mostly 0), in the unit layout (input i of sample b at i * B + b) and step order,
    # in the samples' own dtype; the network checks every value it is sent
    arrays = [np.asarray(sample_counts) for sample_counts, _ in samples]
    found = [np.flatnonzero(array != 0) for array in arrays]  # NaN too: refused where it is sent
    flat = np.concatenate(found)
    step = flat // n_inputs
    unit = (flat - step * n_inputs) * n_batch + np.repeat(np.arange(n_batch), [len(f) for f in found])
    value = np.concatenate([array.reshape(-1)[f] for array, f in zip(arrays, found, strict=True)]).astype(
        np.result_type(*arrays), copy=False)
    order = np.argsort(step.astype(np.int32 if chunk_steps >= 2 ** 15 else np.int16), kind="stable")  # radix sort
    counts = EventCounts((chunk_steps, n_inputs * n_batch), step[order], unit[order], value[order])
    targets = np.zeros((chunk_steps, n_classes * n_batch))
    labels = np.array([int(label) for _, label in samples])
    targets[:length, labels * n_batch + np.arange(n_batch)] = 1.0  # class k of sample b is unit k * B + b
    eta = np.zeros(chunk_steps)
    if learn:
        eta[burnin:length] = lr
    new_sample = np.zeros(chunk_steps)
    new_sample[0] = 1.0
    if length < chunk_steps:
        new_sample[length] = 1.0  # padding starts from a clean state and learns nothing
    masks = None
    if dropout > 0:
        if learn:
            if rng is None:
                raise ValueError("Learning with dropout needs a random generator for the masks")
            # the same draws as ever, (steps, B, n) per layer, kept as bits in the unit layout
            masks = [DropoutMasks(to_units(rng.random((chunk_steps, n_batch, n)) >= dropout), 1.0 / (1.0 - dropout))
                     for n in layer_sizes]
        else:
            masks = [DropoutMasks(np.ones((chunk_steps, n * n_batch), dtype=bool), 1.0) for n in layer_sizes]
    return ChunkInputs(counts, targets, eta, new_sample, masks)
