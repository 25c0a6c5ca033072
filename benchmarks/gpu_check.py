"""Device check on a GPU machine: cuda_standalone against cpp_standalone (and the NumPy reference), then speed.

1. ``environment``: what :func:`decolle_brian.cuda.cuda_status` finds (nvcc, GPUs, driver, brian2cuda, cuRAND).
2. ``equivalence``: the core network of ``tests/test_equivalence.py`` (40 inputs, dense 30-20-12, 4 classes,
   200 steps, burn-in 20, event counts > 1, dropout masks) learns one sample on cpp_standalone and on
   cuda_standalone: SGD and Adamax in the exact mode, SGD in the event mode. Spikes must be identical, U and
   readouts within 1e-9, learned weights, biases and Adamax state within 1e-6 relative, cuda vs cpp, and (exact
   mode) cuda vs the NumPy reference.
3. ``benchmark``: networks learning on every step (Adamax, dropout 0.5) from Poisson input: the dense
   2048-1000-1000 (10 classes) and the DvsGesture conv network of ``runs/dvsgesture.toml`` (2x32x32 -> conv
   64-128-128 7x7, 11 classes; ``--conv-mode`` exact or event), the conv network also evaluating (no learning,
   no dropout). Compile time, wall time per run (process start, synapse creation, CUDA context, array transfers
   included) and the simulation loop time the binary measures itself, in ms per 1-ms step, for cuda_standalone
   and cpp_standalone (dense: 1 thread and all cores; conv: all cores).
4. ``benchmark.batch``: the dense network of ``runs/nmnist.toml`` (2048-500-500) learning online (batch 1,
   ``--online-samples`` samples one after the other per run) and in minibatches (``--batches``, default 72
   samples side by side per run, one optimiser step per step on the batch mean): training samples per second
   from the loop time and from the wall time of a run, cuda_standalone and cpp_standalone on all cores.

Every stage is written to ``gpu_check.json`` as soon as it ends (a killed run keeps what it did), with a log
``gpu_check.log``. Exit status 0: all equivalence checks passed; 1: one failed; 2: no GPU or no CUDA build.
``--cpu-only`` runs every stage without the GPU half (a dry run of this script on any machine).

On the device machine (Python 3.12 with numpy, sympy, scipy, jinja2, Cython, nvcc 13 and the nvidia-curand
wheel already there), carry wheels of ``brian2==2.10.1`` and ``brian2cuda==1.0b1`` in ``.whl`` and run::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 && python3 benchmarks/gpu_check.py --out $OUT

``--quick``: SGD equivalence and the dense 1156-500-500 only (no conv, no minibatch stage).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import brian2
import numpy as np
from brian2 import get_device

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a plain checkout

from decolle_brian import cuda  # noqa: E402
from decolle_brian import reference as ref  # noqa: E402
from decolle_brian.config import load_config  # noqa: E402
from decolle_brian.devices import DeviceError, Simulator  # noqa: E402
from decolle_brian.network.batch import pack_batch  # noqa: E402
from decolle_brian.network.chunks import pack_chunk  # noqa: E402
from decolle_brian.network.params import init_params  # noqa: E402
from decolle_brian.network.spec import (  # noqa: E402
    ConvLayerSpec,
    DenseLayerSpec,
    LearningSpec,
    NetworkSpec,
    NeuronParams,
)
from decolle_brian.presets import dvsgesture_spec, runs_dir  # noqa: E402

EQ_T, EQ_BURNIN, EQ_INPUTS, EQ_SIZES, EQ_CLASSES = 200, 20, 40, (30, 20, 12), 4
TOL_U, TOL_PARAMS = 1e-9, 1e-6
EQUIVALENCE_CASES = ("sgd-exact", "adamax-exact", "sgd-event")  # OPTIMIZER-MODE; gpu_check.sh runs each apart


class Report:
    """Results dict written to ``<out>/gpu_check.json`` after every stage, and a log beside it."""

    def __init__(self, out: Path):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.data: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.log_file = open(out / "gpu_check.log", "a")  # noqa: SIM115 - open for the whole run

    def log(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def save(self) -> None:
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=1, default=_jsonable))


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ---- 2. equivalence -------------------------------------------------------------------------------------------
def eq_spec(optimizer: str, mode: str = "exact") -> NetworkSpec:
    return NetworkSpec(
        n_inputs=EQ_INPUTS, layers=tuple(DenseLayerSpec(n) for n in EQ_SIZES), n_classes=EQ_CLASSES,
        neuron=NeuronParams(), learning=LearningSpec(optimizer=optimizer, lr=3e-3 if optimizer == "sgd" else 1e-3,
                                                     dropout=0.5, burnin=EQ_BURNIN), mode=mode)


def eq_inputs(spec: NetworkSpec, masks_seed: int):
    params = init_params(spec, np.random.default_rng(1))
    for k in range(1, len(EQ_SIZES) + 1):
        params[f"layer{k}.W"] *= 3.0  # strong enough that every layer fires
    rng = np.random.default_rng(2)
    counts = rng.poisson(0.15, (EQ_T, EQ_INPUTS)).astype(float)
    counts[rng.random((EQ_T, EQ_INPUTS)) < 0.02] += 2  # several events in one bin
    inputs, _ = pack_chunk([(counts, 2)], EQ_T, EQ_CLASSES, lr=spec.learning.lr, burnin=EQ_BURNIN, learn=True,
                           dropout=spec.learning.dropout, layer_sizes=list(EQ_SIZES),
                           rng=np.random.default_rng(masks_seed))
    return params, counts, inputs


def run_device(spec, device: str, build_dir: Path, params, inputs, probes=("u", "s"), threads: int = 1) -> dict:
    t0 = time.perf_counter()
    sim = Simulator(spec, inputs.counts.shape[0], device=device, build_dir=build_dir, probes=probes,
                    threads=threads)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = sim.run_chunk(inputs, {k: v.copy() for k, v in params.items()})
    return {"out": out, "build_s": build_s, "run_s": time.perf_counter() - t0, "sim": sim}


def compare(a, b, n_layers: int) -> dict:
    """Differences between two ChunkOutputs-like dicts {spikes, u, y, params}."""
    res = {"spike_mismatches": [int(np.sum(a["spikes"][k] != b["spikes"][k])) for k in range(n_layers)],
           "max_abs_u": max(float(np.max(np.abs(a["u"][k] - b["u"][k]))) for k in range(n_layers)),
           "max_abs_y": max(float(np.max(np.abs(a["y"][k] - b["y"][k]))) for k in range(n_layers)),
           "max_rel_params": {}}
    for key in a["params"]:
        if key in b["params"]:
            x, y = np.asarray(a["params"][key]), np.asarray(b["params"][key])
            res["max_rel_params"][key] = float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-12 / TOL_PARAMS)))
    res["passed"] = bool(sum(res["spike_mismatches"]) == 0 and res["max_abs_u"] <= TOL_U
                         and res["max_abs_y"] <= TOL_U and all(v <= TOL_PARAMS
                                                               for v in res["max_rel_params"].values()))
    return res


def _outputs(out) -> dict:
    return {"spikes": [p["s"] for p in out.probes], "u": [p["u"] for p in out.probes], "y": out.y,
            "params": out.params}


def equivalence(optimizer: str, mode: str, work: Path, report: Report, gpu: bool = True) -> dict:
    spec = eq_spec(optimizer, mode)
    params, counts, inputs = eq_inputs(spec, masks_seed=5 if optimizer == "sgd" else 6)
    result: dict = {"optimizer": optimizer, "mode": mode}
    label = f"{optimizer}-{mode}"
    runs = {}
    for device in ("cpp_standalone", "cuda_standalone") if gpu else ("cpp_standalone",):
        report.log(f"equivalence {label}: building {device}")
        r = run_device(spec, device, work / f"eq-{label}-{device}", params, inputs)
        runs[device] = _outputs(r["out"])
        result[device] = {"build_s": r["build_s"], "run_s": r["run_s"],
                          "spikes_per_layer": [int(s.sum()) for s in runs[device]["spikes"]]}
        report.log(f"  {device}: build {r['build_s']:.1f} s, run {r['run_s']:.2f} s, "
                   f"spikes {result[device]['spikes_per_layer']}")
    layers = [ref.DenseLayer(params[f"layer{k}.W"].copy(), params[f"layer{k}.b"].copy(),
                             params[f"layer{k}.G"].copy(), params[f"layer{k}.g"].copy())
              for k in range(1, len(EQ_SIZES) + 1)]
    expected = ref.run_sample(layers, counts, 2, n_classes=EQ_CLASSES, consts=ref.Constants(), burnin=EQ_BURNIN,
                              learn=True, loss="smoothl1", surrogate="fast_sigmoid", slope=10.0,
                              optimizer=optimizer, lr=spec.learning.lr, masks=inputs.masks)
    ref_params = {}
    for k, layer in enumerate(layers, start=1):
        ref_params[f"layer{k}.W"], ref_params[f"layer{k}.b"] = layer.W, layer.b
        if optimizer == "adamax":
            state = expected["opt_state"][k - 1]
            ref_params[f"layer{k}.v_W"], ref_params[f"layer{k}.v_b"] = state["W"], state["b"]
    ref_out = {"spikes": expected["spikes"], "u": expected["u"], "y": expected["y"], "params": ref_params}
    cpu = runs["cpp_standalone"]
    result["cpp_vs_reference"] = compare(cpu, ref_out, len(EQ_SIZES))
    result["weak"] = any(s == 0 for s in result["cpp_standalone"]["spikes_per_layer"])
    # the event mode learns with the weight in use at each event's arrival: the exact reference applies to the
    # exact mode only (tests/test_event_driven.py checks the event semantics); event: cuda must equal cpp
    exact = mode == "exact"
    if not gpu:  # dry run: the CPU half only
        result["learned"] = bool(not np.allclose(cpu["params"]["layer1.W"], params["layer1.W"]))
        result["passed"] = bool((result["cpp_vs_reference"]["passed"] or not exact) and result["learned"]
                                and not result["weak"])
        report.log(f"equivalence {label} (cpp only): {'PASSED' if result['passed'] else 'FAILED'}")
        return result
    gpu_out = runs["cuda_standalone"]
    result["learned"] = bool(not np.allclose(gpu_out["params"]["layer1.W"], params["layer1.W"]))
    result["cuda_vs_cpp"] = compare(gpu_out, cpu, len(EQ_SIZES))
    result["cuda_vs_reference"] = compare(gpu_out, ref_out, len(EQ_SIZES))
    result["passed"] = bool(result["cuda_vs_cpp"]["passed"] and (result["cuda_vs_reference"]["passed"] or not exact)
                            and result["learned"] and not result["weak"])
    report.log(f"equivalence {label}: {'PASSED' if result['passed'] else 'FAILED'} "
               f"(cuda vs cpp: spikes off {result['cuda_vs_cpp']['spike_mismatches']}, "
               f"max |du| {result['cuda_vs_cpp']['max_abs_u']:.2e}, "
               f"max rel param {max(result['cuda_vs_cpp']['max_rel_params'].values()):.2e})")
    return result


# ---- 3. benchmark ---------------------------------------------------------------------------------------------
def dense_spec(sizes: list[int]) -> NetworkSpec:
    """Dense network ``sizes[0]`` inputs -> ``sizes[1:]``, 10 classes, Adamax on every step, dropout 0.5."""
    return NetworkSpec(n_inputs=sizes[0], layers=tuple(DenseLayerSpec(n) for n in sizes[1:]), n_classes=10,
                       learning=LearningSpec(optimizer="adamax", lr=1e-3, dropout=0.5, burnin=0))


def conv_spec(mode: str = "exact") -> NetworkSpec:
    """The DvsGesture network of ``runs/dvsgesture.toml`` (2x32x32 -> conv 64-128-128 7x7, pools 2, 1, 2, its
    Adamax, lr and dropout), learning from the first step (burn-in 0)."""
    return replace(dvsgesture_spec(burnin=0), mode=mode)


def nmnist_dense_sizes() -> list[int]:
    """Inputs and dense layer sizes of ``runs/nmnist.toml`` (the reference's N-MNIST network, batch 72)."""
    layers = load_config(runs_dir() / "nmnist.toml")["network"]["layers"]
    return [2 * 32 * 32] + [layer if isinstance(layer, int) else int(layer["n"]) for layer in layers]


def connections(spec: NetworkSpec) -> int:
    """Synapses the forward pass touches per step (conv: the taps inside the input, as the builder makes them)."""
    total, size = 0, spec.n_inputs
    for layer in spec.layers:
        total += layer.n_synapses if isinstance(layer, ConvLayerSpec) else size * layer.n
        size = layer.n
    return total


def _device_name(device: str, threads: int) -> str:
    return f"{device}-{threads}t" if device == "cpp_standalone" else device


def timed_runs(sim: Simulator, inputs, params: dict, repeats: int, steps: int, learn: bool) -> dict:
    """``repeats`` timed runs after one warm-up (page cache, CUDA context): wall time of ``run_chunk`` and the
    simulation loop time the binary measures itself. Learning runs carry the learned parameters on."""
    entry = {"wall_s": [], "loop_s": []}
    current = {k: v.copy() for k, v in params.items()}
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        out = sim.run_chunk(inputs, current)
        wall = time.perf_counter() - t0
        loop = getattr(get_device(), "_last_run_time", None)
        if learn:
            current = out.params
        if i:
            entry["wall_s"].append(wall)
            entry["loop_s"].append(loop)
    entry["spikes_per_run"] = [int(n.sum()) for n in out.n_spikes]
    entry["wall_ms_per_step"] = float(np.median(entry["wall_s"]) / steps * 1e3)
    if all(v is not None for v in entry["loop_s"]):
        entry["loop_ms_per_step"] = float(np.median(entry["loop_s"]) / steps * 1e3)
    entry["finite"] = bool(all(np.all(np.isfinite(v)) for v in out.params.values()))
    return entry


def benchmark(spec: NetworkSpec, label: str, steps: int, repeats: int, devices: list[tuple[str, int]],
              work: Path, report: Report, rate: float, phases: tuple[str, ...] = ("learn",)) -> dict:
    """ms per step of ``spec`` on every device: learning on every step (the entry's own keys) and, with "eval"
    in ``phases``, evaluating (no learning, no dropout: ``entry["eval"]``) with the same binary."""
    rng = np.random.default_rng(0)
    params = init_params(spec, rng)
    counts = rng.poisson(rate, (steps, spec.n_inputs)).astype(float)
    sizes = [layer.n for layer in spec.layers]
    inputs = {learn: pack_chunk([(counts, 3)], steps, spec.n_classes, lr=spec.learning.lr, burnin=0, learn=learn,
                                dropout=spec.learning.dropout, layer_sizes=sizes, rng=rng)[0]
              for learn in (True, False)}
    synapses = connections(spec)
    result = {"network": label, "mode": spec.mode, "steps_per_run": steps, "synapses": synapses,
              "input_rate": rate, "phases": list(phases), "runs": {}}
    for device, threads in devices:
        name = _device_name(device, threads)
        report.log(f"benchmark {label}: building {name}")
        t0 = time.perf_counter()
        sim = Simulator(spec, steps, device=device, build_dir=work / f"bench-{label}-{name}", threads=threads)
        entry = {"build_s": time.perf_counter() - t0, **timed_runs(sim, inputs[True], params, repeats, steps, True)}
        if "loop_ms_per_step" in entry:
            entry["ns_per_synapse_step"] = entry["loop_ms_per_step"] / synapses * 1e6
        if "eval" in phases:
            entry["eval"] = timed_runs(sim, inputs[False], params, repeats, steps, False)
        result["runs"][name] = entry
        for phase, values in (("learn", entry), ("eval", entry.get("eval"))):
            if values is not None:
                report.log(f"  {name} {phase}: wall {values['wall_ms_per_step']:.3f} ms and loop "
                           f"{values.get('loop_ms_per_step', float('nan')):.3f} ms per step, "
                           f"spikes {values['spikes_per_run']}")
        report.log(f"  {name}: build {entry['build_s']:.1f} s")
        del sim
    gpu = result["runs"].get("cuda_standalone")
    for name, cpu in result["runs"].items():
        if gpu and name != "cuda_standalone":
            result[f"speedup_wall_vs_{name}"] = cpu["wall_ms_per_step"] / gpu["wall_ms_per_step"]
            if "loop_ms_per_step" in gpu and "loop_ms_per_step" in cpu:
                result[f"speedup_loop_vs_{name}"] = cpu["loop_ms_per_step"] / gpu["loop_ms_per_step"]
            if "eval" in gpu and "loop_ms_per_step" in gpu["eval"] and "loop_ms_per_step" in cpu.get("eval", {}):
                result[f"speedup_eval_loop_vs_{name}"] = (cpu["eval"]["loop_ms_per_step"]
                                                          / gpu["eval"]["loop_ms_per_step"])
    return result


def batch_benchmark(sizes: list[int], batches: list[int], steps: int, online_samples: int, repeats: int,
                    devices: list[tuple[str, int]], work: Path, report: Report, rate: float) -> dict:
    """Training samples per second of a dense network, online (batch 1) and in minibatches (docs/batch.md).

    Batch 1: one run holds ``online_samples`` samples of ``steps`` steps one after the other (as
    ``training.chunk_samples``). Batch B > 1: one run holds B samples side by side (``training.batch_size``),
    one optimiser step per time step on their mean gradient. Both learn on every step (Adamax, dropout 0.5);
    samples/s from the binary's loop time (``loop_samples_per_s``) and from the wall time of a run.
    """
    result = {"network": "dense-" + "-".join(map(str, sizes)), "steps_per_sample": steps, "input_rate": rate,
              "online_samples_per_run": online_samples, "runs": {}}
    for device, threads in devices:
        name = _device_name(device, threads)
        for batch in batches:
            spec = replace(dense_spec(sizes), batch_size=batch)
            rng = np.random.default_rng(0)
            params = init_params(spec, rng)
            n_samples = online_samples if batch == 1 else batch
            samples = [(rng.poisson(rate, (steps, spec.n_inputs)).astype(float), k % spec.n_classes)
                       for k in range(n_samples)]
            kw = {"lr": spec.learning.lr, "burnin": 0, "learn": True, "dropout": spec.learning.dropout,
                  "layer_sizes": [layer.n for layer in spec.layers], "rng": rng}
            if batch == 1:
                chunk_steps = steps * n_samples
                inputs, _ = pack_chunk(samples, chunk_steps, spec.n_classes, **kw)
            else:
                chunk_steps = steps
                inputs = pack_batch(samples, chunk_steps, spec.n_classes, **kw)
            label = f"{name}-batch{batch}"
            report.log(f"batch benchmark: building {label}")
            t0 = time.perf_counter()
            sim = Simulator(spec, chunk_steps, device=device, build_dir=work / f"batch-{label}", threads=threads)
            entry = {"build_s": time.perf_counter() - t0, "batch_size": batch, "samples_per_run": n_samples,
                     **timed_runs(sim, inputs, params, repeats, chunk_steps, True)}
            entry["wall_samples_per_s"] = n_samples / float(np.median(entry["wall_s"]))
            if "loop_ms_per_step" in entry:
                entry["loop_samples_per_s"] = n_samples / float(np.median(entry["loop_s"]))
            result["runs"][label] = entry
            report.log(f"  {label}: build {entry['build_s']:.1f} s, {entry.get('loop_samples_per_s', float('nan')):.1f}"
                       f" samples/s (loop), {entry['wall_samples_per_s']:.1f} samples/s (wall)")
            del sim
        one, most = result["runs"].get(f"{name}-batch1"), result["runs"].get(f"{name}-batch{max(batches)}")
        if one and most and most is not one and "loop_samples_per_s" in one and "loop_samples_per_s" in most:
            result[f"speedup_loop_batch{max(batches)}_vs_1_{name}"] = (most["loop_samples_per_s"]
                                                                       / one["loop_samples_per_s"])
    return result


# ---- main -----------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/out/gpu_check",
                        help="folder for gpu_check.json and gpu_check.log (default: $OUT)")
    parser.add_argument("--work", default=None, help="build folders (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="SGD equivalence only; benchmark 1156-500-500")
    parser.add_argument("--skip-equivalence", action="store_true")
    parser.add_argument("--skip-benchmark", action="store_true")
    parser.add_argument("--cases", default=",".join(EQUIVALENCE_CASES),
                        help="equivalence cases OPTIMIZER-MODE, comma-separated (one process can run each)")
    parser.add_argument("--list-cases", action="store_true", help="print the default cases, one per line, and exit")
    parser.add_argument("--sizes", default=None, help="dense benchmark sizes, input first (default 2048,1000,1000)")
    parser.add_argument("--steps", type=int, default=1000, help="benchmark steps per run (1 ms each)")
    parser.add_argument("--repeats", type=int, default=3, help="timed benchmark runs per device")
    parser.add_argument("--rate", type=float, default=0.05, help="benchmark input events per input and step")
    parser.add_argument("--conv-steps", type=int, default=50,
                        help="steps per run of the conv (DvsGesture) benchmark; 0: skip it")
    parser.add_argument("--conv-repeats", type=int, default=1, help="timed conv benchmark runs per device")
    parser.add_argument("--conv-mode", default="exact", choices=("exact", "event"),
                        help="network.mode of the conv benchmark (default exact, as runs/dvsgesture.toml)")
    parser.add_argument("--batches", default="1,72",
                        help="batch sizes of the dense minibatch benchmark, comma-separated; '' skips it")
    parser.add_argument("--batch-sizes", default=None,
                        help="its dense network, input first (default: runs/nmnist.toml's, 2048 inputs)")
    parser.add_argument("--batch-steps", type=int, default=300, help="steps per sample of the minibatch benchmark")
    parser.add_argument("--online-samples", type=int, default=8,
                        help="samples per run at batch 1 (training.chunk_samples) in the minibatch benchmark")
    parser.add_argument("--cpu-only", action="store_true",
                        help="dry run without a GPU: every stage on cpp_standalone only (checks this script)")
    args = parser.parse_args(argv)
    if args.list_cases:
        print("\n".join(EQUIVALENCE_CASES))
        return 0

    out = Path(args.out)
    report = Report(out)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="decolle-gpu-check-"))
    report.data["work"] = str(work)

    status = cuda.cuda_status()
    report.data["environment"] = {
        "summary": cuda.cuda_summary_line(status), "cuda_status": status, "python": sys.version.split()[0],
        "numpy": np.__version__, "brian2": brian2.__version__, "platform": platform.platform(),
        "cpus": os.cpu_count()}
    report.log(report.data["environment"]["summary"])
    report.save()
    try:
        if not args.cpu_only:
            cuda.check_cuda_available(require_gpu=True)
    except DeviceError as err:
        report.data["error"] = str(err)
        report.log(f"cannot check: {err}")
        report.save()
        return 2

    failed = False
    if not args.skip_equivalence:
        report.data["equivalence"] = {}
        cases = ["sgd-exact"] if args.quick else args.cases.split(",")
        for optimizer, mode in (case.split("-") for case in cases):
            try:
                result = equivalence(optimizer, mode, work, report, gpu=not args.cpu_only)
            except Exception as err:  # keep going: the benchmark may still tell something
                result = {"passed": False, "error": f"{type(err).__name__}: {err}",
                          "traceback": traceback.format_exc()}
                report.log(f"equivalence {optimizer}-{mode}: ERROR {err}")
            failed |= not result["passed"]
            report.data["equivalence"][f"{optimizer}-{mode}"] = result
            report.save()

    if not args.skip_benchmark:
        sizes = ([int(v) for v in args.sizes.split(",")] if args.sizes
                 else [1156, 500, 500] if args.quick else [2048, 1000, 1000])
        cpus = os.cpu_count() or 1
        gpu = [] if args.cpu_only else [("cuda_standalone", 1)]
        stages = [("dense-" + "-".join(map(str, sizes)), dense_spec(sizes), args.steps, args.repeats,
                   [("cpp_standalone", 1)] + ([("cpp_standalone", cpus)] if cpus > 1 else []) + gpu)]
        if not args.quick and args.conv_steps > 0:  # GPU first; one CPU thread would take minutes per run
            stages.append(("conv-dvsgesture", conv_spec(args.conv_mode), args.conv_steps, args.conv_repeats,
                           gpu + [("cpp_standalone", cpus)]))
        report.data["benchmark"] = {}
        for label, spec, steps, repeats, devices in stages:
            phases = ("learn", "eval") if label.startswith("conv") else ("learn",)
            try:
                result = benchmark(spec, label, steps, repeats, devices, work, report, args.rate, phases)
            except Exception as err:
                result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
                report.log(f"benchmark {label}: ERROR {err}")
            report.data["benchmark"][label] = result
            report.save()
        batches = [int(v) for v in args.batches.split(",") if v.strip()]
        if batches and not args.quick:
            batch_sizes = ([int(v) for v in args.batch_sizes.split(",")] if args.batch_sizes
                           else nmnist_dense_sizes())
            try:
                result = batch_benchmark(batch_sizes, batches, args.batch_steps, args.online_samples, args.repeats,
                                         gpu + [("cpp_standalone", cpus)], work, report, args.rate)
            except Exception as err:
                result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
                report.log(f"batch benchmark: ERROR {err}")
            report.data["benchmark"]["batch"] = result
            report.save()

    report.data["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    report.data["passed"] = not failed
    report.save()
    report.log(f"done: {'all equivalence checks passed' if not failed else 'EQUIVALENCE FAILED'}; "
               f"results in {out / 'gpu_check.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
