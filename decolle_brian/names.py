"""Built-in names: losses, surrogates, optimisers, modes, devices and the runtime code targets.

A leaf module (no sympy, no Brian2): the configuration, the network spec and the command line check names
against these tables; the derivation turns the texts into sympy expressions.
"""

from __future__ import annotations

#: Built-in local losses of a readout ``y`` and a one-hot ``target`` (mean over classes as PyTorch's defaults).
LOSSES: dict[str, str] = {
    "smoothl1": "mean(where(abs(y - target) < 1, (y - target)**2 / 2, abs(y - target) - 1/2))",
    "mse": "mean((y - target)**2)",
    "ce": "log(sum(exp(y))) - sum(target * y)",  # softmax cross-entropy for a target summing to 1
}

#: Built-in surrogate derivatives sigma'(u) and their default parameters.
SURROGATES: dict[str, tuple[str, dict[str, float]]] = {
    "fast_sigmoid": ("1 / (slope * abs(u) + 1)**2", {"slope": 10.0}),
    "boxcar": ("where((u > -width / 2) & (u <= width / 2), 1, 0)", {"width": 1.0}),
    "sigmoid": ("slope * exp(-slope * u) / (1 + exp(-slope * u))**2", {"slope": 1.0}),
}

OPTIMIZERS = ("sgd", "adamax")
#: how the forward sum and the weight step run: every synapse every step, or driven by events (docs/event_driven.md)
MODES = ("exact", "event")

#: where the batched network (training.batch_size > 1) is built: (mode, layer kind) -> the optimisers it takes.
#: The one statement of it; the network spec and the configuration both check against it (docs/batch.md).
BATCHES_BUILT = {("exact", "dense"): OPTIMIZERS, ("exact", "conv"): OPTIMIZERS, ("event", "dense"): ("sgd",)}

#: why mode "event" with batches (training.batch_size > 1) refuses Adamax: spec, config and emission say this
ADAMAX_EVENT_BATCH_REASON = (
    "Adamax at every step cannot be lazy: v = max(beta2 v, |g| + eps) needs the full batch gradient of every "
    "synapse at every learning step (its infinity norm is not linear in g), the O(synapses) per step that mode "
    "'event' exists to avoid (docs/event_driven.md, 'Batches')")

#: Brian2 devices a network runs on: runtime (Python), C++ standalone, CUDA standalone (brian2cuda).
DEVICES = ("runtime", "cpp_standalone", "cuda_standalone")
#: code generation targets of the runtime device
RUNTIME_TARGETS = ("numpy", "cython")

#: numpy: no C compile before the first step (the runtime device is for small and debugging runs)
DEFAULT_RUNTIME_TARGET = "numpy"

#: floating-point precision of a compiled network's state and arithmetic (``network.precision``), the default first
PRECISIONS = ("float64", "float32")
DEFAULT_PRECISION = PRECISIONS[0]
#: precision -> the devices that build it (docs/batch.md, "float32"): the one statement of it, checked by the
#: configuration and by the Simulator. float32 needs this package's C++ loops in single precision; the runtime
#: device (NumPy/Cython code mixing float64 inputs and constants) and brian2cuda are not built or tested for it
PRECISION_DEVICES = {"float64": DEVICES, "float32": ("cpp_standalone",)}

#: simulation time step (ms): every per-step decay is exp(-DT_MS / tau)
DT_MS = 1.0
