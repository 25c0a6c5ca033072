"""Baseline speed of the exact DECOLLE mode: dense 2048-500-500, T = 300, input activity 2 %.

Measures, in one run and on the same inputs: cpp_standalone with 1 and 2 OpenMP threads, and the NumPy
reference. Learning is on at every step (Adamax, dropout 0.5, no burn-in), so every synapse is updated
every step. Reports ms per simulated step and synapse updates per second; writes JSON to benchmarks/out/.

    .venv/bin/python benchmarks/dense_baseline.py [--samples 4] [--activity 0.02]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from decolle_brian import reference as ref
from decolle_brian.devices import Simulator
from decolle_brian.network.chunks import pack_chunk
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import DenseLayerSpec, LearningSpec, NetworkSpec

N_IN, SIZES, T, N_CLASSES = 2048, (500, 500), 300, 10


def make_inputs(n_samples: int, activity: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [((rng.random((T, N_IN)) < activity).astype(float), int(rng.integers(N_CLASSES)))
            for _ in range(n_samples)]


def n_synapses() -> int:
    sizes = (N_IN, *SIZES)
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def bench_brian(spec, samples, threads: int, build_root: Path) -> dict:
    started = time.time()
    sim = Simulator(spec, T * len(samples), device="cpp_standalone", threads=threads,
                    build_dir=build_root / f"dense-{threads}t")
    build_s = time.time() - started
    rng = np.random.default_rng(1)
    params = init_params(spec, rng)
    inputs, _ = pack_chunk(samples, T * len(samples), N_CLASSES, lr=spec.learning.lr, burnin=0, learn=True,
                           dropout=spec.learning.dropout, layer_sizes=list(SIZES), rng=rng)
    sim.run_chunk(inputs, params)  # warm-up (file cache)
    started = time.time()
    out = sim.run_chunk(inputs, params)
    wall = time.time() - started
    steps = T * len(samples)
    return {"device": "cpp_standalone", "threads": threads, "build_s": round(build_s, 1), "wall_s": wall,
            "ms_per_step": 1000 * wall / steps, "samples_per_s": len(samples) / wall,
            "synapse_updates_per_s": n_synapses() * steps / wall,
            "spikes_per_step": [float(n.mean()) for n in out.n_spikes]}


def bench_run_overhead(build_root: Path, repeats: int = 20) -> dict:
    """Fixed cost of one run of a compiled network (inputs and parameters in, results out): a tiny network."""
    spec = NetworkSpec(n_inputs=20, layers=(DenseLayerSpec(10),), n_classes=3,
                       learning=LearningSpec(optimizer="sgd", dropout=0.0))
    sim = Simulator(spec, 10, device="cpp_standalone", build_dir=build_root / "overhead")
    rng = np.random.default_rng(0)
    params = init_params(spec, rng)
    inputs, _ = pack_chunk([(rng.poisson(0.2, (10, 20)).astype(float), 0)], 10, 3, lr=0.1, burnin=0, learn=True,
                           dropout=0.0, layer_sizes=[10])
    times = []
    for _ in range(repeats):
        started = time.time()
        sim.run_chunk(inputs, params)
        times.append(time.time() - started)
    return {"run_overhead_ms_median": 1000 * float(np.median(times))}


def bench_reference(spec, samples) -> dict:
    rng = np.random.default_rng(1)
    params = init_params(spec, rng)
    layers = [ref.DenseLayer(params[f"layer{k}.W"], params[f"layer{k}.b"], params[f"layer{k}.G"],
                             params[f"layer{k}.g"]) for k in (1, 2)]
    state = None
    started = time.time()
    for counts, label in samples:
        masks = [(rng.random((T, n)) >= 0.5) / 0.5 for n in SIZES]
        state = ref.run_sample(layers, counts, label, n_classes=N_CLASSES, learn=True, optimizer="adamax",
                               lr=spec.learning.lr, masks=masks, opt_state=state)["opt_state"]
    wall = time.time() - started
    steps = T * len(samples)
    return {"device": "numpy reference", "threads": "numpy default", "wall_s": wall, "ms_per_step": 1000 * wall / steps,
            "samples_per_s": len(samples) / wall, "synapse_updates_per_s": n_synapses() * steps / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--activity", type=float, default=0.02)
    parser.add_argument("--out", default="benchmarks/out")
    args = parser.parse_args()
    spec = NetworkSpec(n_inputs=N_IN, layers=tuple(DenseLayerSpec(n) for n in SIZES), n_classes=N_CLASSES,
                       learning=LearningSpec(optimizer="adamax", lr=1e-3, dropout=0.5, burnin=0))
    samples = make_inputs(args.samples, args.activity)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [bench_brian(spec, samples, 1, out / "build"), bench_brian(spec, samples, 2, out / "build"),
               bench_reference(spec, samples)]
    overhead = bench_run_overhead(out / "build")
    report = {"network": f"dense {N_IN}-{SIZES[0]}-{SIZES[1]}", "T": T, "activity": args.activity,
              "synapses": n_synapses(), "samples": args.samples, "cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "results": results, **overhead}
    (out / "dense_baseline.json").write_text(json.dumps(report, indent=2))
    print("| mode | threads | ms / step | samples / s | synapse updates / s |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['device']} | {r['threads']} | {r['ms_per_step']:.2f} | {r['samples_per_s']:.2f} "
              f"| {r['synapse_updates_per_s']:.3g} |")
    print(f"fixed cost of one run (inputs in, results out), tiny network: {overhead['run_overhead_ms_median']:.0f} ms")


if __name__ == "__main__":
    main()
