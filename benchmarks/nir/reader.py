"""Run a NIR graph exported by ``decolle-brian export`` on event counts, outside the package (Python >= 3.10).

The import check's simulator: NIR's own reader (``nir.read``) and NIRTorch's graph interpreter
(``nirtorch.nir_to_torch``, the NIR -> PyTorch engine snnTorch's importer is built on) execute the graph step
by step on CPU; the neuron nodes the graph uses (CubaLI, LI, Threshold, Scale) get PyTorch modules here,
discretised with the graph's ``metadata["dt"]`` in one of two ways (``--integration``):

``exp``    exponential Euler (zero-order hold): ``x <- exp(-dt/tau) x + (1 - exp(-dt/tau)) drive``, the
           membrane from the previous step's current. What the graph's metadata states; DECOLLE's own steps.
``euler``  forward Euler: ``x <- x + dt/tau (drive - x)``, as snnTorch's and Norse's NIR importers
           discretise their neurons.

Recurrent edges (the refractory loop) read the previous step's output (NIRTorch's rule for cycles).
Inputs: an HDF5 file with ``counts`` (N, T, *input shape), event counts per step. Output: an HDF5 file with
``spike_counts`` (N, L): spikes per sample and layer (the ``layer<l>_spikes`` outputs), ``predictions`` (N, L):
per layer the majority vote of argmax ``layer<l>_y`` over steps t >= burnin (ties: smallest class), and the
attribute ``stock_importer``: what snnTorch's own ``import_from_nir`` says of the graph (when snnTorch is
installed). No pickle anywhere.

    python reader.py GRAPH.nir INPUTS.h5 OUT.h5 [--integration exp|euler] [--batch 256]
"""

from __future__ import annotations

import argparse
import json
import time

import h5py
import nir
import nirtorch
import numpy as np
import torch

DTYPE = torch.float64  # DECOLLE's reference runs in float64: thresholds at 0 see no rounding of float32


def _tensor(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=DTYPE)


def _factors(tau, dt: float, integration: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, gain) of one step: ``x <- keep x + gain drive``."""
    tau = _tensor(tau)
    keep = torch.exp(-dt / tau) if integration == "exp" else 1.0 - dt / tau
    return keep, (1.0 - keep if integration == "exp" else dt / tau)


class CubaLI(torch.nn.Module):
    """tau_syn dI/dt = -I + w_in S, tau_mem dv/dt = v_leak - v + r I; output v (membrane from the old I)."""

    def __init__(self, node: nir.CubaLI, dt: float, integration: str):
        super().__init__()
        self.keep_syn, self.gain_syn = _factors(node.tau_syn, dt, integration)
        self.keep_mem, self.gain_mem = _factors(node.tau_mem, dt, integration)
        self.r, self.v_leak, self.w_in = _tensor(node.r), _tensor(node.v_leak), _tensor(node.w_in)

    def forward(self, x, state=None):
        current, v = (torch.zeros_like(x), torch.zeros_like(x)) if state is None else state
        v = self.keep_mem * v + self.gain_mem * (self.v_leak + self.r * current)
        current = self.keep_syn * current + self.gain_syn * self.w_in * x
        return v, (current, v)


class LI(torch.nn.Module):
    """tau dv/dt = v_leak - v + r I; output v."""

    def __init__(self, node: nir.LI, dt: float, integration: str):
        super().__init__()
        self.keep, self.gain = _factors(node.tau, dt, integration)
        self.r, self.v_leak = _tensor(node.r), _tensor(node.v_leak)

    def forward(self, x, state=None):
        v = torch.zeros_like(x) if state is None else state
        v = self.keep * v + self.gain * (self.v_leak + self.r * x)
        return v, v


class Threshold(torch.nn.Module):
    """z = 1 where the (summed) input exceeds the threshold."""

    def __init__(self, node: nir.Threshold):
        super().__init__()
        self.threshold = _tensor(node.threshold)

    def forward(self, x):
        return (x > self.threshold).to(DTYPE)


class Scale(torch.nn.Module):
    def __init__(self, node: nir.Scale):
        super().__init__()
        self.scale = _tensor(node.scale)

    def forward(self, x):
        return x * self.scale


def _flatten(node: nir.Flatten) -> torch.nn.Module:
    # NIR's dims exclude the batch; here dimension 0 is the batch
    end = node.end_dim if node.end_dim < 0 else node.end_dim + 1
    return torch.nn.Flatten(start_dim=node.start_dim + 1, end_dim=end)


def _affine(node) -> torch.nn.Module:
    weight = _tensor(node.weight)
    module = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=hasattr(node, "bias"), dtype=DTYPE)
    module.weight.data = weight
    if hasattr(node, "bias"):
        module.bias.data = _tensor(node.bias)
    return module


def _conv2d(node: nir.Conv2d) -> torch.nn.Module:
    weight = _tensor(node.weight)
    module = torch.nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]),
                             stride=tuple(int(s) for s in np.atleast_1d(node.stride)),
                             padding=tuple(int(p) for p in np.atleast_1d(node.padding)),
                             dilation=tuple(int(d) for d in np.atleast_1d(node.dilation)),
                             groups=int(node.groups), dtype=DTYPE)
    module.weight.data, module.bias.data = weight, _tensor(node.bias)
    return module


def to_torch(graph: nir.NIRGraph, dt: float, integration: str) -> torch.nn.Module:
    """The graph as a stateful PyTorch module (NIRTorch's interpreter with this file's neuron modules)."""
    node_map = {
        nir.CubaLI: lambda node: CubaLI(node, dt, integration),
        nir.LI: lambda node: LI(node, dt, integration),
        nir.Threshold: Threshold,
        nir.Scale: Scale,
        nir.Flatten: _flatten,
        nir.Linear: _affine,
        nir.Affine: _affine,
        nir.Conv2d: _conv2d,
    }
    return nirtorch.nir_to_torch(graph, node_map, dtype=DTYPE)


def one_output(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, dict[str, str]]:
    """The graph with its first Output node only, and for every Output the node that feeds it.

    NIRTorch 2.6 executes graphs with one Output node (with more it never finishes building); the others
    are read from the modules that feed them (forward hooks in :func:`simulate`).
    """
    outputs = sorted(name for name, node in graph.nodes.items() if isinstance(node, nir.Output))
    feeds = {dst: src for src, dst in graph.edges if dst in outputs}
    dropped = set(outputs[1:])
    nodes = {name: node for name, node in graph.nodes.items() if name not in dropped}
    edges = [(src, dst) for src, dst in graph.edges if dst not in dropped]
    # type_check=False: checking would give every node left without a successor an Output node again
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata, type_check=False), feeds


def stock_importer_verdict(graph: nir.NIRGraph) -> str:
    """What snnTorch's own NIR importer makes of the graph: 'accepted', its error, or 'snntorch absent'."""
    try:
        from snntorch.import_nir import import_from_nir
    except ImportError:
        return "snntorch absent"
    try:
        import_from_nir(graph)
    except Exception as exc:  # noqa: BLE001 - any refusal is the answer
        return f"refused: {type(exc).__name__}: {exc}"[:500]
    return "accepted"


def majority_vote(y: np.ndarray) -> np.ndarray:
    """(T, N, C) readouts -> (N,) the most frequent per-step argmax (ties: the smallest class)."""
    n_classes = y.shape[-1]
    winners = y.argmax(axis=-1)  # (T, N)
    votes = np.stack([np.bincount(w, minlength=n_classes) for w in winners.T])
    return votes.argmax(axis=1)


def simulate(graph: nir.NIRGraph, counts: np.ndarray, integration: str = "exp",
             batch: int = 256) -> dict[str, np.ndarray]:
    """Spike counts (N, L) and majority-vote predictions (N, L) of ``counts`` (N, T, *input shape)."""
    meta = graph.metadata
    dt, burnin, n_layers = float(meta["dt"]), int(meta["burnin"]), int(meta["n_layers"])
    executable, feeds = one_output(graph)
    module = to_torch(executable, dt, integration)
    seen: dict[str, torch.Tensor] = {}
    for output, source in feeds.items():  # record what each Output node would receive
        def record(_module, _inputs, result, output=output):
            seen[output] = result[0] if isinstance(result, tuple) else result
        module.get_submodule(source.replace(".", "_")).register_forward_hook(record)
    n, n_steps = counts.shape[:2]
    spike_counts = np.zeros((n, n_layers), dtype=np.int64)
    predictions = np.zeros((n, n_layers), dtype=np.int64)
    for start in range(0, n, batch):
        x = _tensor(counts[start:start + batch])
        state, ys = None, [[] for _ in range(n_layers)]
        with torch.no_grad():
            for t in range(n_steps):
                _, state = module(x[:, t], state)
                for layer in range(n_layers):
                    spikes = seen[f"layer{layer + 1}_spikes"]
                    spike_counts[start:start + batch, layer] += spikes.flatten(1).sum(1).round().long().numpy()
                    if t >= burnin:
                        ys[layer].append(seen[f"layer{layer + 1}_y"].numpy().copy())
        for layer in range(n_layers):
            predictions[start:start + batch, layer] = majority_vote(np.stack(ys[layer]))
    return {"spike_counts": spike_counts, "predictions": predictions}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graph")
    parser.add_argument("inputs")
    parser.add_argument("out")
    parser.add_argument("--integration", choices=("exp", "euler"), default="exp")
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)
    graph = nir.read(args.graph)
    with h5py.File(args.inputs, "r") as f:
        counts = np.asarray(f["counts"])
    began = time.time()
    result = simulate(graph, counts, args.integration, args.batch)
    with h5py.File(args.out, "w") as f:
        for key, value in result.items():
            f.create_dataset(key, data=value)
        f.attrs["integration"] = args.integration
        f.attrs["wall_s"] = time.time() - began
        f.attrs["stock_importer"] = stock_importer_verdict(graph)
        f.attrs["versions"] = json.dumps({"nir": nir.__version__, "torch": torch.__version__,
                                          "nirtorch": getattr(nirtorch, "__version__", "?")})
    print(json.dumps({"samples": int(counts.shape[0]), "integration": args.integration,
                      "wall_s": round(time.time() - began, 2), "mean_spikes": result["spike_counts"].mean(0).tolist()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
