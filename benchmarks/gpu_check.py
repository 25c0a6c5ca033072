"""Device check on a GPU machine: cuda_standalone against cpp_standalone (and the NumPy reference), then speed.

1. ``environment``: what :func:`decolle_brian.cuda.cuda_status` finds (nvcc, GPUs, driver, brian2cuda, cuRAND).
2. ``equivalence``: the core network of ``tests/test_equivalence.py`` (40 inputs, dense 30-20-12, 4 classes,
   200 steps, burn-in 20, event counts > 1, dropout masks) learns one sample on cpp_standalone and on
   cuda_standalone, SGD and Adamax. Spikes must be identical, U and readouts within 1e-9, learned weights,
   biases and Adamax state within 1e-6 relative, for cuda vs cpp and for cuda vs the NumPy reference.
3. ``benchmark``: a dense network (default 1156-1000-1000-1000, 10 classes, the paper-era N-MNIST size)
   learning on every step (Adamax, dropout 0.5) from Poisson input, one simulated second per run: compile
   time, wall time per run (process start, CUDA context, array transfers included) and the simulation loop
   time the binary measures itself, for cpp_standalone (1 thread and all cores) and cuda_standalone.

Every stage is written to ``gpu_check.json`` as soon as it ends (a killed run keeps what it did), with a log
``gpu_check.log``. Exit status 0: all equivalence checks passed; 1: one failed; 2: no GPU or no CUDA build.

On the device machine (Python 3.12 with numpy, sympy, scipy, jinja2, Cython, nvcc 13 and the nvidia-curand
wheel already there), carry wheels of ``brian2==2.10.1`` and ``brian2cuda==1.0b1`` in ``.whl`` and run::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 && python3 benchmarks/gpu_check.py --out $OUT

``--quick`` (SGD only, dense 1156-500-500) fits a few minutes; the full check about 6 minutes on 16 cores
(nvcc compiles about 50 files per network at about 10 s each).
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
from pathlib import Path

import brian2
import numpy as np
from brian2 import get_device

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a plain checkout

from decolle_brian import cuda  # noqa: E402
from decolle_brian import reference as ref  # noqa: E402
from decolle_brian.devices import DeviceError, Simulator  # noqa: E402
from decolle_brian.network.chunks import pack_chunk  # noqa: E402
from decolle_brian.network.params import init_params  # noqa: E402
from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec, NeuronParams  # noqa: E402

EQ_T, EQ_BURNIN, EQ_INPUTS, EQ_SIZES, EQ_CLASSES = 200, 20, 40, (30, 20, 12), 4
TOL_U, TOL_PARAMS = 1e-9, 1e-6


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
def eq_spec(optimizer: str) -> NetworkSpec:
    return NetworkSpec(
        n_inputs=EQ_INPUTS, layers=tuple(DenseLayerSpec(n) for n in EQ_SIZES), n_classes=EQ_CLASSES,
        neuron=NeuronParams(), learning=LearningSpec(optimizer=optimizer, lr=3e-3 if optimizer == "sgd" else 1e-3,
                                                     dropout=0.5, burnin=EQ_BURNIN))


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


def equivalence(optimizer: str, work: Path, report: Report) -> dict:
    spec = eq_spec(optimizer)
    params, counts, inputs = eq_inputs(spec, masks_seed=5 if optimizer == "sgd" else 6)
    result: dict = {"optimizer": optimizer}
    runs = {}
    for device in ("cpp_standalone", "cuda_standalone"):  # one standalone device per process: in turn
        report.log(f"equivalence {optimizer}: building {device}")
        r = run_device(spec, device, work / f"eq-{optimizer}-{device}", params, inputs)
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
    cpu, gpu = runs["cpp_standalone"], runs["cuda_standalone"]
    result["learned"] = bool(not np.allclose(gpu["params"]["layer1.W"], params["layer1.W"]))
    result["cuda_vs_cpp"] = compare(gpu, cpu, len(EQ_SIZES))
    result["cuda_vs_reference"] = compare(gpu, ref_out, len(EQ_SIZES))
    result["cpp_vs_reference"] = compare(cpu, ref_out, len(EQ_SIZES))
    result["weak"] = any(s == 0 for s in result["cpp_standalone"]["spikes_per_layer"])
    result["passed"] = bool(result["cuda_vs_cpp"]["passed"] and result["cuda_vs_reference"]["passed"]
                            and result["learned"] and not result["weak"])
    report.log(f"equivalence {optimizer}: {'PASSED' if result['passed'] else 'FAILED'} "
               f"(cuda vs cpp: spikes off {result['cuda_vs_cpp']['spike_mismatches']}, "
               f"max |du| {result['cuda_vs_cpp']['max_abs_u']:.2e}, "
               f"max rel param {max(result['cuda_vs_cpp']['max_rel_params'].values()):.2e})")
    return result


# ---- 3. benchmark ---------------------------------------------------------------------------------------------
def benchmark(sizes: list[int], steps: int, repeats: int, devices: list[tuple[str, int]], work: Path,
              report: Report, rate: float) -> dict:
    spec = NetworkSpec(n_inputs=sizes[0], layers=tuple(DenseLayerSpec(n) for n in sizes[1:]), n_classes=10,
                       learning=LearningSpec(optimizer="adamax", lr=1e-3, dropout=0.5, burnin=0))
    rng = np.random.default_rng(0)
    params = init_params(spec, rng)
    counts = rng.poisson(rate, (steps, sizes[0])).astype(float)
    inputs, _ = pack_chunk([(counts, 3)], steps, spec.n_classes, lr=1e-3, burnin=0, learn=True, dropout=0.5,
                           layer_sizes=list(sizes[1:]), rng=rng)
    synapses = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    result = {"sizes": sizes, "steps_per_run": steps, "synapses": synapses, "input_rate": rate, "runs": {}}
    for device, threads in devices:
        name = f"{device}-{threads}t" if device == "cpp_standalone" else device
        report.log(f"benchmark {sizes}: building {name}")
        t0 = time.perf_counter()
        sim = Simulator(spec, steps, device=device, build_dir=work / f"bench-{name}", threads=threads)
        entry = {"build_s": time.perf_counter() - t0, "wall_s": [], "loop_s": []}
        current = {k: v.copy() for k, v in params.items()}
        for i in range(repeats + 1):  # the first run is a warm-up (page cache, CUDA context, JIT)
            t0 = time.perf_counter()
            out = sim.run_chunk(inputs, current)
            wall = time.perf_counter() - t0
            loop = getattr(get_device(), "_last_run_time", None)
            current = out.params
            if i:
                entry["wall_s"].append(wall)
                entry["loop_s"].append(loop)
        entry["spikes_per_run"] = [int(n.sum()) for n in out.n_spikes]
        simulated_s = steps * 1e-3
        entry["wall_per_simulated_s"] = float(np.median(entry["wall_s"]) / simulated_s)
        if all(v is not None for v in entry["loop_s"]):
            entry["loop_per_simulated_s"] = float(np.median(entry["loop_s"]) / simulated_s)
            entry["ns_per_synapse_step"] = float(np.median(entry["loop_s"]) / (steps * synapses) * 1e9)
        entry["finite"] = bool(all(np.all(np.isfinite(v)) for v in out.params.values()))
        result["runs"][name] = entry
        report.log(f"  {name}: build {entry['build_s']:.1f} s, wall {entry['wall_per_simulated_s']:.3f} s and "
                   f"loop {entry.get('loop_per_simulated_s', float('nan')):.3f} s per simulated second")
    base = result["runs"].get("cpp_standalone-1t")
    if base and "cuda_standalone" in result["runs"]:
        gpu = result["runs"]["cuda_standalone"]
        result["speedup_wall_vs_cpp_1t"] = base["wall_per_simulated_s"] / gpu["wall_per_simulated_s"]
        if "loop_per_simulated_s" in gpu and "loop_per_simulated_s" in base:
            result["speedup_loop_vs_cpp_1t"] = base["loop_per_simulated_s"] / gpu["loop_per_simulated_s"]
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
    parser.add_argument("--sizes", default=None, help="benchmark layer sizes, input first (e.g. 1156,1000,1000)")
    parser.add_argument("--steps", type=int, default=1000, help="benchmark steps per run (1 ms each)")
    parser.add_argument("--repeats", type=int, default=3, help="timed benchmark runs per device")
    parser.add_argument("--rate", type=float, default=0.05, help="benchmark input events per input and step")
    parser.add_argument("--no-cpp-threads", action="store_true", help="skip the all-cores cpp_standalone run")
    args = parser.parse_args(argv)

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
        cuda.check_cuda_available(require_gpu=True)
    except DeviceError as err:
        report.data["error"] = str(err)
        report.log(f"cannot check: {err}")
        report.save()
        return 2

    failed = False
    if not args.skip_equivalence:
        report.data["equivalence"] = {}
        for optimizer in ("sgd",) if args.quick else ("sgd", "adamax"):
            try:
                result = equivalence(optimizer, work, report)
            except Exception as err:  # keep going: the benchmark may still tell something
                result = {"passed": False, "error": f"{type(err).__name__}: {err}",
                          "traceback": traceback.format_exc()}
                report.log(f"equivalence {optimizer}: ERROR {err}")
            failed |= not result["passed"]
            report.data["equivalence"][optimizer] = result
            report.save()

    if not args.skip_benchmark:
        sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
                 else [1156, 500, 500] if args.quick else [1156, 1000, 1000, 1000])
        devices = [("cpp_standalone", 1)]
        if not args.no_cpp_threads and (os.cpu_count() or 1) > 1:
            devices.append(("cpp_standalone", os.cpu_count()))
        devices.append(("cuda_standalone", 1))
        try:
            report.data["benchmark"] = benchmark(sizes, args.steps, args.repeats, devices, work, report, args.rate)
        except Exception as err:
            report.data["benchmark"] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
            report.log(f"benchmark: ERROR {err}")
        report.save()

    report.data["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    report.data["passed"] = not failed
    report.save()
    report.log(f"done: {'all equivalence checks passed' if not failed else 'EQUIVALENCE FAILED'}; "
               f"results in {out / 'gpu_check.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
