r"""A trained DECOLLE network as a NIR graph (Neuromorphic Intermediate Representation, the ``nir`` package).

One layer ``l`` of the discrete model (docs/model.md) per step t, with the input spikes S_in::

    Q[t] = beta Q[t-1] + (1 - beta) S_in[t]          P[t] = alpha P[t-1] + (1 - alpha) Q[t-1]
    R[t] = alpharp R[t-1] - (1 - alpharp) wrp S[t-1]
    U[t] = W P[t] + b + R[t]                        S[t] = H(U[t])   (threshold 0, no reset)

W is linear, so W P is the membrane trace of the current W Q, and the layer becomes these NIR nodes (names
``layer<l>_<part>``)::

    synapse     Linear(W) or Conv2d(K, padding, bias 0)         the current's input, W S_in
    traces      CubaLI(tau_syn, tau_mem, r = 1, w_in = 1)       I = W Q (synaptic), v = W P (membrane)
    spike       Threshold(-b)                                   S = H(v + R + b) = H(v + R > -b)
    refr_weight Scale(-wrp)              spike -> refr_weight -> refractory -> spike (recurrent edge)
    refractory  LI(tau_ref, r = 1)                              R
    pool        SumPool2d(pool) -> pool_spike Threshold(1/2)    conv layers with pool > 1 only
    readout     Affine(G, g) -> Output ``layer<l>_y``           the fixed local readout y = G S + g
                Output ``layer<l>_spikes``                      the layer's (pooled) spikes, for counting

with ``tau = -dt / ln(decay)`` for each of alpha (tau_mem), beta (tau_syn), alpharp (tau_ref) and dt = 1 ms,
all in seconds (``time_constants="euler"``: ``tau = dt / (1 - decay)``, for forward-Euler readers).
Max-pooling on U before the spike is exact in this form: max_k U_k > 0 exactly when some H(U_k) = 1, so the
pooled spike is H(sum of the window's spikes > 1/2), while each full-resolution unit keeps its own refractory
trace, as in DECOLLE.

What NIR leaves to the reader (docs/nir.md measures each): NIR's nodes are continuous-time ODEs, DECOLLE is
their exponential-Euler (zero-order hold) solution with dt = 1 ms, the membrane stepped from the current of
the previous step (P lags Q by one step) and the recurrent edge read from the previous step (R[t] from
S[t-1]); a reader that integrates otherwise (forward Euler ``1 - dt/tau``) runs a slightly different network,
unless the graph carries ``time_constants="euler"``.
The graph's ``metadata`` states dt, the decays, the discretisation and the vote's burn-in.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from decolle_brian._version import __version__
from decolle_brian.config import network_spec, read_toml, resolve
from decolle_brian.data import load_dataset
from decolle_brian.errors import ConfigError, StoreError
from decolle_brian.network.params import expected_shapes
from decolle_brian.network.spec import NetworkSpec
from decolle_brian.store import atomic_write, read_checkpoint

#: One DECOLLE step, in seconds (NIR's time constants are in seconds).
DT = 1e-3
#: File name of an export inside the run folder (``--out`` chooses another).
DEFAULT_FILE = "network.nir"


def time_constant(decay: float, dt: float = DT) -> float:
    """``tau = -dt / ln(decay)``: the time constant whose exact one-step decay is ``decay`` (0 < decay < 1)."""
    _check_decay(decay)
    return -dt / math.log(decay)


def euler_time_constant(decay: float, dt: float = DT) -> float:
    """``tau = dt / (1 - decay)``: forward Euler (``x += dt/tau (drive - x)``) then keeps ``decay`` per step and
    takes ``1 - decay`` of the drive, DECOLLE's step exactly (0 < decay < 1)."""
    _check_decay(decay)
    return dt / (1.0 - decay)


def _check_decay(decay: float) -> None:
    if not 0.0 < decay < 1.0:
        raise ConfigError(f"a per-step decay must lie in (0, 1) to have a time constant, got {decay}")


#: How the per-step decays become NIR time constants, and the integration a reader must use to run DECOLLE's
#: steps exactly: ``exact`` (the continuous-time constants, default) or ``euler`` (for forward-Euler readers).
TIME_CONSTANTS = {
    "exact": (time_constant, "exponential Euler (zero-order hold) with dt"),
    "euler": (euler_time_constant, "forward Euler with dt"),
}


def _full(value: float, shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, value, dtype=np.float64)


def build_graph(spec: NetworkSpec, params: dict[str, np.ndarray], burnin: int = 0, time_constants: str = "exact"):
    """The NIR graph of a DECOLLE network ``spec`` with the parameters ``params`` (names of
    :mod:`decolle_brian.network.params`: ``layer<l>.W`` or ``.K``, ``.b``, ``.G``, ``.g``).

    Parameters
    ----------
    spec : NetworkSpec
        Layers, constants (``spec.neuron``) and, before a conv layer, ``spec.input_shape``.
    params : dict of ndarray
        The trained parameters (a checkpoint's ``params``; optimiser state is ignored).
    burnin : int
        Steps of a sample the majority vote leaves out (stored in the metadata for the reader).
    time_constants : {"exact", "euler"}
        :data:`TIME_CONSTANTS`: continuous-time constants (exact for an exponential-Euler reader), or those a
        forward-Euler reader needs to step as DECOLLE does.

    Returns
    -------
    nir.NIRGraph
        Validated (types inferred and checked by NIR).
    """
    import nir  # noqa: PLC0415 - only the export needs it

    if time_constants not in TIME_CONSTANTS:
        raise ConfigError(f"time constants {time_constants!r}: choose one of {sorted(TIME_CONSTANTS)}")
    to_tau, integration = TIME_CONSTANTS[time_constants]
    neuron = spec.neuron
    tau_syn, tau_mem, tau_ref = (to_tau(d) for d in (neuron.beta, neuron.alpha, neuron.alpharp))
    first = spec.layers[0]
    in_shape = tuple(first.in_shape) if first.kind == "conv" else (spec.n_inputs,)
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
    edges: list[tuple[str, str]] = []
    source, shape = "input", in_shape  # the node feeding the next layer, and what it emits
    for index, layer in enumerate(spec.layers, start=1):
        key, name = f"layer{index}", f"layer{index}_"
        bias = np.asarray(params[f"{key}.b"], dtype=np.float64)
        if layer.kind == "conv":
            kernel = np.asarray(params[f"{key}.K"], dtype=np.float64)
            full = tuple(layer.full_shape)
            nodes[name + "synapse"] = nir.Conv2d(
                input_shape=np.array(layer.in_shape[1:]), weight=kernel, stride=np.array([1, 1]),
                padding=np.array([layer.padding, layer.padding]), dilation=np.array([1, 1]), groups=1,
                bias=np.zeros(layer.channels))
            threshold = np.broadcast_to(-bias[:, None, None], full).copy()  # the channel's bias at every unit
        else:
            if len(shape) > 1:  # a conv layer below: its pooled spikes, flattened in C order
                nodes[name + "flatten"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0,
                                                      end_dim=-1)
                edges.append((source, name + "flatten"))
                source = name + "flatten"
            full = (layer.n,)
            nodes[name + "synapse"] = nir.Linear(weight=np.asarray(params[f"{key}.W"], dtype=np.float64))
            threshold = -bias
        nodes[name + "traces"] = nir.CubaLI(tau_syn=_full(tau_syn, full), tau_mem=_full(tau_mem, full),
                                            r=_full(1.0, full), v_leak=_full(0.0, full), w_in=_full(1.0, full))
        nodes[name + "spike"] = nir.Threshold(threshold=threshold)
        nodes[name + "refr_weight"] = nir.Scale(scale=_full(-neuron.wrp, full))
        nodes[name + "refractory"] = nir.LI(tau=_full(tau_ref, full), r=_full(1.0, full), v_leak=_full(0.0, full))
        edges += [(source, name + "synapse"), (name + "synapse", name + "traces"), (name + "traces", name + "spike"),
                  (name + "spike", name + "refr_weight"), (name + "refr_weight", name + "refractory"),
                  (name + "refractory", name + "spike")]
        out = name + "spike"
        if layer.kind == "conv" and layer.pool > 1:
            nodes[name + "pool"] = nir.SumPool2d(kernel_size=np.array([layer.pool] * 2),
                                                 stride=np.array([layer.pool] * 2), padding=np.array([0, 0]))
            nodes[name + "pool_spike"] = nir.Threshold(threshold=_full(0.5, tuple(layer.out_shape)))
            edges += [(out, name + "pool"), (name + "pool", name + "pool_spike")]
            out = name + "pool_spike"
        shape = tuple(layer.out_shape) if layer.kind == "conv" else (layer.n,)
        readout_in = out
        if len(shape) > 1:
            nodes[name + "readout_flatten"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0,
                                                          end_dim=-1)
            edges.append((out, name + "readout_flatten"))
            readout_in = name + "readout_flatten"
        nodes[name + "readout"] = nir.Affine(weight=np.asarray(params[f"{key}.G"], dtype=np.float64),
                                             bias=np.asarray(params[f"{key}.g"], dtype=np.float64))
        nodes[name + "y"] = nir.Output(output_type={"output": np.array([spec.n_classes])})
        nodes[name + "spikes"] = nir.Output(output_type={"output": np.array(shape)})
        edges += [(readout_in, name + "readout"), (name + "readout", name + "y"), (out, name + "spikes")]
        source = out
    metadata = {
        "source": f"decolle-brian {__version__}", "model": "DECOLLE (Kaiser, Mostafa & Neftci 2020), discrete time",
        "dt": DT, "time_unit": "s", "alpha": neuron.alpha, "beta": neuron.beta, "alpharp": neuron.alpharp,
        "wrp": neuron.wrp, "burnin": int(burnin), "n_classes": int(spec.n_classes), "n_layers": len(spec.layers),
        "time_constants": time_constants,
        "discretisation": f"{integration}: v from the previous step's current, then the current; "
                          "recurrent edges read the previous step",
        "prediction": "per layer: majority vote of argmax layer<l>_y over the steps t >= burnin",
    }
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)
    graph.infer_types()  # NIR's own validation: structure, then every edge's types
    graph.check_types()
    return graph


def run_graph(run_dir: str | Path, data_root: str | None = None, time_constants: str = "exact"):
    """The NIR graph of a run folder's checkpoint (its ``config.toml`` and ``checkpoint.h5``; no Brian2).

    Raises
    ------
    StoreError
        ``run_dir`` is not a run folder, or its checkpoint is missing, corrupt or does not fit the config.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise StoreError(f"{run_dir} is not a run folder (config.toml missing); give the folder a "
                         "`decolle-brian train` run wrote (runs/out/<name>/<timestamp>)")
    config = resolve(read_toml(run_dir / "config.toml", "run configuration"))  # checked when the run began
    data = config["data"]
    dataset = load_dataset(data["dataset"], "test", data_root or data["root"] or None, **dict(data["params"]),
                           max_samples=1)  # only its shape and classes: nothing is encoded or read yet
    shape = tuple(dataset.input_shape)
    spec = network_spec(config, int(np.prod(shape)), dataset.n_classes, shape, check_rule=False)  # no sympy
    params, _ = read_checkpoint(run_dir, expected_shapes(spec), spec.structure_key())
    return build_graph(spec, params, burnin=config["learning"]["burnin"], time_constants=time_constants)


def export_nir(run_dir: str | Path, out: str | Path | None = None, data_root: str | None = None,
               time_constants: str = "exact") -> Path:
    """Write the NIR graph of a run (:func:`run_graph`) to ``out`` (default ``RUN_DIR/network.nir``, HDF5).

    The file is replaced atomically; returns its path.
    """
    import nir  # noqa: PLC0415

    graph = run_graph(run_dir, data_root, time_constants)
    path = Path(out) if out is not None else Path(run_dir) / DEFAULT_FILE
    if not path.parent.is_dir():
        raise StoreError(f"Cannot write {path}: the folder {path.parent} does not exist; create it or choose "
                         "another --out")
    atomic_write(path, lambda tmp: nir.write(tmp, graph))
    return path
