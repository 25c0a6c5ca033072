"""Benchmark: the DvsGesture conv network (64-128-128, 7x7, pools 2, 1, 2) in Brian2's C++ standalone device.

Builds :func:`decolle_brian.presets.dvsgesture_spec`, compiles it once, runs chunks of a synthetic
recording written in the exact IBM format (AEDAT 3.1 + labels csv, read back through the DvsGesture loader:
4x4 summing to 2x32x32, 1 ms bins), first with learning on every step (burn-in 0), then evaluating (no
learning), and records (as JSON): neuron counts, convolution taps and synapses created per layer, the
learned state stored in Brian, build + compile time, per chunk the time per step measured by the binary
itself and the fixed cost of a run (wall time of ``run_chunk`` minus the steps: writing the run's arrays,
starting the binary, loading and writing every array, reading the results back), peak memory of this
process and of the binary, the machine's load average, and Brian's profile of the most expensive code
objects (of the last learning run and of the last evaluation run). With ``--reference-python`` the published
reference (decolle 0.2, PyTorch CPU, batch 1, same thread count) is timed by ``benchmarks/reference_anchor.py``
under that interpreter and printed side by side. ``--batch B`` builds the batched network (docs/batch.md: B
samples side by side, one optimiser step per step on their mean gradient) and times the reference at the same
batch; the summary then gives ms per step of the batch and per sample-step.
Not a CI test.

Usage::

    .venv/bin/python benchmarks/conv_dvsgesture.py [--steps 20] [--chunks 3] [--eval-chunks 2]
        [--mode exact|event] [--batch 1] [--reference-python /path/to/refenv/bin/python]

``--mode event`` builds the network in mode "event" (docs/conv.md): the forward pass scatters the kernel
taps of each event into the units' postsynaptic filters instead of summing every tap every step.
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
from dataclasses import replace
from pathlib import Path

import numpy as np
from anchor import add_reference_option, run_reference  # benchmarks/anchor.py (the script's folder)
from brian2 import get_device

from decolle_brian.data import load_dataset
from decolle_brian.data.dvsgesture import write_synthetic_recording
from decolle_brian.devices import Simulator
from decolle_brian.names import MODES
from decolle_brian.network.batch import pack_batch
from decolle_brian.network.chunks import pack_chunk
from decolle_brian.network.params import init_params
from decolle_brian.network.spec import NetworkSpec
from decolle_brian.presets import dvsgesture_spec


def counts(sim: Simulator) -> dict:
    """Neurons, synapses and learned values per layer, read from the Brian objects."""
    layers = []
    for k, (lo, spec) in enumerate(zip(sim.net.layers, sim.spec.layers, strict=True), start=1):
        layers.append({
            "layer": k, "full_shape": list(spec.full_shape), "out_shape": list(spec.out_shape),
            "kernel_elements": len(lo.kernel), "biases": len(lo.bias),
            "full_units": len(lo.full), "pooled_units": len(lo.group),
            "conv_taps": spec.n_synapses,
            "conv_synapses_created": len(lo.forward) + (len(lo.events) if lo.events is not None else 0),
            "bias_synapses": len(lo.bias_synapses),
            "readout_synapses": len(lo.readout_synapses),
            "learned_values_in_brian": sum(lo.learned_state().values()),
        })
    total = {key: sum(layer[key] for layer in layers)
             for key in ("kernel_elements", "full_units", "pooled_units", "conv_taps", "conv_synapses_created",
                         "readout_synapses",
                         "learned_values_in_brian")}
    return {"layers": layers, "total": total}


def child_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished children: the standalone binary's runs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child_user_s() -> float:
    """User CPU seconds of this process's finished children (the steps' computation; the system time is mostly
    the run's fixed cost: page faults of fresh arrays, reading and writing the run's files)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime


def side_by_side(ours: dict, reference: dict) -> str:
    """A table of this package's figures beside the reference's (``reference_anchor.py``'s record)."""
    rows = [("ms per step, learning on", ours["learn_ms_per_step"], reference.get("learn_ms_per_step")),
            ("ms per step, evaluation", ours["eval_ms_per_step"], reference.get("eval_ms_per_step")),
            ("CPU ms per step, learning on", ours["learn_cpu_ms_per_step"], reference.get("learn_cpu_ms_per_step")),
            ("CPU ms per step, evaluation", ours["eval_cpu_ms_per_step"], reference.get("eval_cpu_ms_per_step")),
            ("user CPU ms/step, learning", ours["learn_user_ms_per_step"], None),
            ("user CPU ms/step, evaluation", ours["eval_user_ms_per_step"], None),
            ("build + compile s", ours["build_and_compile_s"], None),
            ("fixed cost per run s", ours["fixed_s_per_run"], None),
            ("peak memory GB", max(ours["peak_rss_gb_python"], ours["peak_rss_gb_binary"]),
             None if reference.get("peak_rss_mb") is None else round(reference["peak_rss_mb"] / 1024, 3))]
    lines = [f"{'':28s} {'decolle-brian':>14s} {'reference':>14s}"]
    lines += [f"{name:28s} {ours_value!s:>14s} {'-' if ref_value is None else ref_value!s:>14s}"
              for name, ours_value, ref_value in rows]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per chunk (run)")
    parser.add_argument("--chunks", type=int, default=3,
                        help="chunks (runs) learning on every step; the first is a warm-up, not in the summary")
    parser.add_argument("--eval-chunks", type=int, default=2, help="chunks (runs) evaluating, after the learning ones")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads of the C++ standalone device")
    parser.add_argument("--rate", type=float, default=2e5, help="events per second of the synthetic recording")
    parser.add_argument("--build-dir", default=None, help="standalone project folder (default: per structure)")
    parser.add_argument("--mode", choices=list(MODES), default=NetworkSpec.mode,
                        help="network.mode: 'exact' sums every tap every step, 'event' scatters the taps of events")
    parser.add_argument("--json", default=None,
                        help="write the results to this file too (default benchmarks/out/conv_dvsgesture.json, "
                             "conv_dvsgesture_<mode>.json for another mode)")
    parser.add_argument("--batch", type=int, default=1,
                        help="samples side by side (training.batch_size; mode 'exact'); the reference at that batch")
    parser.add_argument("--profile-top", type=int, default=12,
                        help="code objects kept in the profile of the last learning and evaluation run, most "
                             "expensive first (0: all of them; benchmarks/conv_profile.py tabulates them)")
    add_reference_option(parser)
    args = parser.parse_args(argv)
    if args.chunks < 2 or args.eval_chunks < 1 or args.steps < 1 or args.batch < 1:
        parser.error("need --chunks >= 2 (the first is a warm-up), --eval-chunks >= 1, --steps >= 1, --batch >= 1")

    if args.json is None:
        suffix = "" if args.mode == NetworkSpec.mode else f"_{args.mode}"
        suffix += f"_b{args.batch}" if args.batch > 1 else ""
        args.json = str(Path(__file__).parent / "out" / f"conv_dvsgesture{suffix}.json")
    # learn on every step: the cost of a training step
    spec = replace(dvsgesture_spec(burnin=0), mode=args.mode, batch_size=args.batch).validate()
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    # the profile is compiled into the standalone project (a build folder of its own)
    sim = Simulator(spec, args.steps, device="cpp_standalone", build_dir=args.build_dir, threads=args.threads,
                    profile=True)
    build_s = time.perf_counter() - t0
    result = {"network": "dvsgesture conv 64-128-128 7x7 pools 2,1,2", "mode": args.mode, "batch": args.batch,
              "structure": spec.structure_key(),
              "steps_per_chunk": args.steps, "threads": args.threads,
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "build_and_compile_s": round(build_s, 1), "load_average_during_build": round(load_before, 1)}
    print(json.dumps(result, indent=1), flush=True)

    rng = np.random.default_rng(0)
    params = init_params(spec, rng)
    with tempfile.TemporaryDirectory() as folder:
        gestures = [(label, 1_000_000 * k, 1_000_000 * k + 900_000) for k, label in enumerate((3, 8), start=1)]
        write_synthetic_recording(folder, 1, "fluorescent", gestures, rng, rate_hz=args.rate)
        dataset = load_dataset("dvsgesture", "train", root=folder, layout="ibm", cache=False)
        samples = [dataset[i] for i in range(len(dataset))]
    runs = []
    for chunk in range(args.chunks + args.eval_chunks):
        learn = chunk < args.chunks
        batch = [samples[(chunk + b) % len(samples)] for b in range(args.batch)]
        items = [(sample.counts[: args.steps].reshape(args.steps, -1).astype(float), sample.label) for sample in batch]
        pack_kw = dict(lr=spec.learning.lr, burnin=0, learn=learn, dropout=spec.learning.dropout,
                       layer_sizes=spec.layer_sizes()[1:], rng=rng)
        inputs = (pack_batch(items, args.steps, spec.n_classes, **pack_kw) if args.batch > 1
                  else pack_chunk(items, args.steps, spec.n_classes, **pack_kw)[0])
        load = os.getloadavg()[0]
        cpu0, user0 = child_cpu_s(), child_user_s()
        t0 = time.perf_counter()
        out = sim.run_chunk(inputs, params)
        wall = time.perf_counter() - t0
        binary_cpu, binary_user = child_cpu_s() - cpu0, child_user_s() - user0
        params = out.params
        run_s = float(get_device()._last_run_time)  # the binary's own time of network.run (the steps only)
        runs.append({"chunk": chunk, "learn": learn, "wall_s": round(wall, 3), "network_run_s": round(run_s, 3),
                     "ms_per_step": round(1e3 * run_s / args.steps, 2),
                     "ms_per_sample_step": round(1e3 * run_s / args.steps / args.batch, 2),
                     "fixed_s": round(wall - run_s, 3),
                     "binary_cpu_s": round(binary_cpu, 3), "binary_user_s": round(binary_user, 3),
                     "load_average": round(load, 1),
                     "spikes_per_step": [round(float(n.mean()), 1) for n in out.n_spikes]})
        print(json.dumps(runs[-1]), flush=True)
        if chunk == 0:  # standalone: sizes are known once the binary has run
            result.update(counts(sim))
            print(json.dumps(result["total"], indent=1), flush=True)
        last = {args.chunks - 1: "profile_ms_per_step", args.chunks + args.eval_chunks - 1: "profile_eval_ms_per_step"}
        if chunk in last:  # the profile of the last learning run and of the last evaluation run
            profile = sim.profiling_info()  # most expensive first
            kept = profile[:args.profile_top] if args.profile_top > 0 else profile
            result[last[chunk]] = {name: round(1e3 * float(t) / args.steps, 3) for name, t in kept}
            print(json.dumps({last[chunk]: result[last[chunk]]}, indent=1), flush=True)
    result["runs"] = runs
    learning, evaluating = runs[1:args.chunks], runs[args.chunks:]
    result["summary"] = {
        "batch": args.batch,
        "learn_ms_per_step": min(r["ms_per_step"] for r in learning),
        "learn_ms_per_sample_step": min(r["ms_per_sample_step"] for r in learning),
        "eval_ms_per_step": min(r["ms_per_step"] for r in evaluating),
        "fixed_s_per_run": min(r["fixed_s"] for r in runs[1:]),
        # on a shared machine the binary's CPU time per step (fixed cost of the run included) bounds the
        # quiet machine's wall time from above better than the wall time does
        "learn_cpu_ms_per_step": round(1e3 * min(r["binary_cpu_s"] for r in learning) / args.steps, 2),
        "eval_cpu_ms_per_step": round(1e3 * min(r["binary_cpu_s"] for r in evaluating) / args.steps, 2),
        "learn_user_ms_per_step": round(1e3 * min(r["binary_user_s"] for r in learning) / args.steps, 2),
        "eval_user_ms_per_step": round(1e3 * min(r["binary_user_s"] for r in evaluating) / args.steps, 2),
        "build_and_compile_s": result["build_and_compile_s"],
        "peak_rss_gb_python": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "peak_rss_gb_binary": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 3),
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }
    print(json.dumps({"summary": result["summary"]}, indent=1), flush=True)
    reference = run_reference(args.reference_python, "conv_dvsgesture", batch=args.batch, threads=args.threads,
                              learn_steps=max(args.steps, 20), measure="learn,eval")
    if reference is not None:
        result["reference"] = reference
        print(side_by_side(result["summary"], reference), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
