"""Benchmark: the DvsGesture conv network (64-128-128, 7x7, pools 2, 1, 2) in Brian2's C++ standalone device.

Builds :func:`decolle_brian.presets.dvsgesture_spec`, compiles it once, runs chunks of a synthetic
recording written in the exact IBM format (AEDAT 3.1 + labels csv, read back through the DvsGesture loader:
4x4 summing to 2x32x32, 1 ms bins) with learning on every step, and records (as JSON): neuron and synapse
counts per layer, the learned state stored in Brian, compile time, wall time per chunk (with the fixed cost
of a standalone run: creating the synapses, loading and writing all arrays) and the simulated time per step
measured by the binary itself, with Brian's profile of the most expensive code objects. Not a CI test.

Usage::

    .venv/bin/python benchmarks/conv_dvsgesture.py [--steps 20] [--chunks 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from brian2 import get_device

from decolle_brian.data import load_dataset
from decolle_brian.data.dvsgesture import write_synthetic_recording
from decolle_brian.devices import Simulator
from decolle_brian.network.chunks import pack_chunk
from decolle_brian.network.params import init_params
from decolle_brian.presets import dvsgesture_spec


def counts(sim: Simulator) -> dict:
    """Neurons, synapses and learned values per layer, read from the Brian objects."""
    layers = []
    for k, (lo, spec) in enumerate(zip(sim.net.layers, sim.spec.layers, strict=True), start=1):
        layers.append({
            "layer": k, "full_shape": list(spec.full_shape), "out_shape": list(spec.out_shape),
            "kernel_elements": len(lo.kernel), "biases": len(lo.bias),
            "full_units": len(lo.full), "pooled_units": len(lo.group),
            "conv_synapses": len(lo.forward), "bias_synapses": len(lo.bias_synapses),
            "readout_synapses": len(lo.readout_synapses),
            "learned_values_in_brian": sum(lo.learned_state().values()),
        })
    total = {key: sum(layer[key] for layer in layers)
             for key in ("kernel_elements", "full_units", "pooled_units", "conv_synapses", "readout_synapses",
                         "learned_values_in_brian")}
    return {"layers": layers, "total": total}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per chunk (run)")
    parser.add_argument("--chunks", type=int, default=2, help="chunks to run (the first includes warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads of the C++ standalone device")
    parser.add_argument("--rate", type=float, default=2e5, help="events per second of the synthetic recording")
    parser.add_argument("--build-dir", default=None, help="standalone project folder (default: per structure)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "out" / "conv_dvsgesture.json"),
                        help="write the results to this file too (default benchmarks/out/conv_dvsgesture.json)")
    args = parser.parse_args(argv)

    spec = dvsgesture_spec(burnin=0)  # learn on every step: the cost of a training step
    t0 = time.perf_counter()
    # the profile is compiled into the standalone project (a build folder of its own)
    sim = Simulator(spec, args.steps, device="cpp_standalone", build_dir=args.build_dir, threads=args.threads,
                    profile=True)
    build_s = time.perf_counter() - t0
    result = {"network": "dvsgesture conv 64-128-128 7x7 pools 2,1,2", "structure": spec.structure_key(),
              "steps_per_chunk": args.steps, "threads": args.threads,
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "build_and_compile_s": round(build_s, 1)}
    print(json.dumps(result, indent=1), flush=True)

    rng = np.random.default_rng(0)
    params = init_params(spec, rng)
    with tempfile.TemporaryDirectory() as folder:
        gestures = [(label, 1_000_000 * k, 1_000_000 * k + 900_000) for k, label in enumerate((3, 8), start=1)]
        write_synthetic_recording(folder, 1, "fluorescent", gestures, rng, rate_hz=args.rate)
        dataset = load_dataset("dvsgesture", "train", root=folder, layout="ibm", cache=False)
        samples = [dataset[i] for i in range(len(dataset))]
    runs = []
    for chunk in range(args.chunks):
        sample = samples[chunk % len(samples)]
        events = sample.counts[: args.steps].reshape(args.steps, -1).astype(float)
        inputs, _ = pack_chunk([(events, sample.label)], args.steps, spec.n_classes, lr=spec.learning.lr,
                               burnin=0, learn=True, dropout=spec.learning.dropout,
                               layer_sizes=spec.layer_sizes()[1:], rng=rng)
        t0 = time.perf_counter()
        out = sim.run_chunk(inputs, params)
        wall = time.perf_counter() - t0
        params = out.params
        run_s = float(get_device()._last_run_time)  # the binary's own time of network.run (the steps only)
        runs.append({"chunk": chunk, "wall_s": round(wall, 2), "network_run_s": round(run_s, 3),
                     "ms_per_step": round(1e3 * run_s / args.steps, 1),
                     "spikes_per_step": [round(float(n.mean()), 1) for n in out.n_spikes]})
        print(json.dumps(runs[-1]), flush=True)
        if chunk == 0:  # standalone: sizes are known once the binary has created the synapses
            result.update(counts(sim))
            print(json.dumps(result["total"], indent=1), flush=True)
    result["runs"] = runs
    result["peak_rss_gb"] = {"python": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                             "standalone_binary": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                                                        / 2**20, 2)}
    print(json.dumps({"peak_rss_gb": result["peak_rss_gb"]}), flush=True)
    profile = sim.profiling_info()  # of the last run, most expensive first
    result["profile_ms_per_step"] = {name: round(1e3 * float(t) / args.steps, 2) for name, t in profile[:12]}
    print(json.dumps({"profile_ms_per_step": result["profile_ms_per_step"]}, indent=1), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
