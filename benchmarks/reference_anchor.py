"""Speed anchor: the published DECOLLE reference (PyPI ``decolle==0.2``, PyTorch CPU) timed on synthetic events.

Runs under the REFERENCE's interpreter, in an environment of its own (docs/benchmarks.md says how to make one);
it imports nothing from this package and nothing of the reference is copied here. It builds the reference's own
networks with its own classes (``decolle.lenet_decolle_model.LenetDECOLLE``, ``LIFLayer``, ``DECOLLELoss``),
initialises them with ``net.init_parameters`` and drives them with the reference's own loops,
``decolle.utils.train`` (online update: at every step after burn-in the forward step, the SmoothL1 local
losses, ``backward``, one Adamax step, ``zero_grad``) and ``decolle.utils.test`` (no gradients, dropout off).

Cases (the parameters of nmi-lab/decolle-public, ``scripts/parameters/params_dvsgestures_torchneuromorphic.yml``
and ``params_nmnist.yml``):

``conv_dvsgesture``
    2x32x32 -> conv 64, 128, 128 (7x7, padding 3, max-pool 2, 1, 2 on U), a fixed random 11-unit readout per
    layer (lc_ampl 2.0); alpha 0.97, beta 0.92, alpharp 0.65, dropout 0.5; Adamax lr 3.6e-4, betas (0, 0.95);
    T 500, burn-in 100. ``--output-layer`` adds the fourth, dense 11-unit LIF layer that the reference's
    ``train_lenet_decolle.py`` builds (with SmoothL1 here too: the timing is the same).
``dense``
    2x32x32 (N-MNIST's 34x34 sensor cropped) flattened by the network's own ``view`` -> 2048-500-500 dense LIF
    layers, a fixed random 10-unit readout per layer (lc_ampl 0.5); alpha 0.97, beta 0.92, alpharp 0.65,
    dropout 0.5; Adamax lr 1e-3, betas (0, 0.95); T 300, burn-in 60.

Inputs: Bernoulli events with probability ``--activity`` per input, step and sample (float32 0/1), a random
one-hot label per sample held for every step. Measured (median of ``--repeats`` runs after one warm-up):

- ``learn_ms_per_step``: ``train`` on a batch of ``--learn-steps`` steps with burn-in 0, wall time over the
  steps (the one extra no-gradient step of ``net.init`` included);
- ``eval_ms_per_step``: ``test`` on the same batch, burn-in 0;
- ``samples_per_s``: ``train`` on one batch of T steps with the case's burn-in, batch / wall time. As written in
  decolle 0.2, ``train`` passes its burn-in to ``net.init``, which ignores it (it runs ``max(net.burnin, 1)``
  = 1 step without gradients), then learns on steps burn-in..T-1: ``steps_run`` counts the steps it simulates;
- ``peak_rss_mb``: the process's peak resident memory;
- ``*_cpu_*``: the same runs' CPU time (all threads), and the 1-minute load average before and after: the
  machine may be shared.

Prints one JSON line on stdout (the reference's own prints go to stderr). Exit status 3 with a message on
stderr when decolle or torch cannot be imported.

Usage::

    /work/refenv/bin/python benchmarks/reference_anchor.py --case conv_dvsgesture --batch 1 --threads 1
    /work/refenv/bin/python benchmarks/reference_anchor.py --case dense --batch 72 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import time

# The published networks' parameters; the one place this script states them.
CASES = {
    "conv_dvsgesture": {
        "network": "LenetDECOLLE conv 64-128-128 7x7 pools 2,1,2, 2x32x32, 11 classes",
        "input_shape": (2, 32, 32), "n_classes": 11, "steps": 500, "burnin": 100,
        "lr": 3.6e-4, "betas": (0.0, 0.95),
        "model": {"Nhid": [64, 128, 128], "Mhid": [], "kernel_size": [7], "stride": [1], "pool_size": [2, 1, 2],
                  "num_conv_layers": 3, "num_mlp_layers": 0, "lc_ampl": 2.0},
    },
    "dense": {
        "network": "LenetDECOLLE dense 2048-500-500, 2x32x32 flattened, 10 classes",
        "input_shape": (2, 32, 32), "n_classes": 10, "steps": 300, "burnin": 60,
        "lr": 1e-3, "betas": (0.0, 0.95),
        "model": {"Nhid": [], "Mhid": [500, 500], "num_conv_layers": 0, "num_mlp_layers": 2, "lc_ampl": 0.5},
    },
}
NEURON = {"alpha": [0.97], "beta": [0.92], "alpharp": [0.65], "dropout": [0.5]}
EXIT_NO_REFERENCE = 3  # not 2: argparse exits 2 on a bad option


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    parser.add_argument("--batch", type=int, default=1, help="samples side by side (the reference trains 72)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--steps", type=int, default=None, help="T of one sample (default: the case's, 500 / 300)")
    parser.add_argument("--burnin", type=int, default=None, help="burn-in of the end-to-end run (default: the case's)")
    parser.add_argument("--learn-steps", type=int, default=50, help="steps of the per-step learning/eval timings")
    parser.add_argument("--activity", type=float, default=0.02, help="probability of an input event per step")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (median reported)")
    parser.add_argument("--measure", default="learn,eval,sample",
                        help="comma-separated subset of learn, eval, sample (sample: one whole T-step batch)")
    parser.add_argument("--output-layer", action="store_true",
                        help="conv: add the dense 11-unit output LIF layer of train_lenet_decolle.py")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.measure = [m.strip() for m in args.measure.split(",") if m.strip()]
    unknown = sorted(set(args.measure) - {"learn", "eval", "sample"})
    if unknown:
        parser.error(f"--measure: unknown {unknown}; choose from learn, eval, sample")
    for name in ("batch", "threads", "learn_steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0.0 <= args.activity <= 1.0:
        parser.error("--activity is a probability: give a value in [0, 1]")
    case = CASES[args.case]
    args.steps = args.steps or case["steps"]
    args.burnin = case["burnin"] if args.burnin is None else args.burnin
    if not 0 <= args.burnin < args.steps:
        parser.error(f"--burnin {args.burnin} must be in [0, T = {args.steps}): give a smaller --burnin "
                     f"or a longer --steps")
    return args


def import_reference():
    """torch and decolle's modules, or exit 3 with the reason (the caller omits the reference's column)."""
    try:
        import numpy as np
        import torch
        from decolle import base_model, lenet_decolle_model, utils
    except Exception as error:  # noqa: BLE001 - any import failure means: no usable reference here
        print(f"reference not importable under {sys.executable}: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(EXIT_NO_REFERENCE)
    return np, torch, base_model, lenet_decolle_model, utils


def build(case: dict, output_layer: bool, ref):
    """The reference's network, loss and optimiser for ``case``, as its training script makes them."""
    np, torch, base_model, lenet, _ = ref
    model = {key: list(value) if isinstance(value, list) else value for key, value in case["model"].items()}
    net = lenet.LenetDECOLLE(input_shape=list(case["input_shape"]), out_channels=case["n_classes"],
                             **model, **{key: list(value) for key, value in NEURON.items()},
                             lif_layer_type=base_model.LIFLayer, method="rtrl", with_output_layer=output_layer)
    losses = [torch.nn.SmoothL1Loss() for _ in range(len(net))]
    decolle_loss = base_model.DECOLLELoss(net=net, loss_fn=losses)
    opt = torch.optim.Adamax(net.get_trainable_parameters(), lr=case["lr"], betas=case["betas"])
    return net, decolle_loss, opt


def synthetic_batch(np, rng, batch: int, steps: int, input_shape, n_classes: int, activity: float):
    """Bernoulli events (batch, steps, *input_shape) and one-hot targets (batch, steps, classes), float32."""
    data = (rng.random((batch, steps, *input_shape), dtype=np.float32) < activity).astype(np.float32)
    labels = rng.integers(n_classes, size=batch)
    targets = np.zeros((batch, steps, n_classes), dtype=np.float32)
    targets[np.arange(batch), :, labels] = 1.0
    return data, targets


def timed(function, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (all threads of the process) of ``repeats`` calls, after one untimed warm-up call.

    The CPU time says what the work cost when the machine is shared: with one thread it is the wall time a
    quiet machine would show; with more, their sum. The reference's own prints go to stderr.
    """
    walls, cpus = [], []
    with contextlib.redirect_stdout(sys.stderr):
        function()
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            function()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return walls, cpus


def main(argv=None) -> dict:
    args = parse_args(argv)
    ref = import_reference()
    np, torch, _, _, utils = ref
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    case = CASES[args.case]
    steps, burnin = args.steps, args.burnin

    net, decolle_loss, opt = build(case, args.output_layer, ref)
    shape = (case["input_shape"], case["n_classes"], args.activity)
    short = [synthetic_batch(np, rng, args.batch, args.learn_steps, *shape)]
    net.init_parameters(torch.tensor(short[0][0]))  # as the reference's training script, before training

    result = {"case": args.case, "network": case["network"] + (" + output layer" if args.output_layer else ""),
              "batch": args.batch, "threads": torch.get_num_threads(), "activity": args.activity,
              "optimizer": f"Adamax lr {case['lr']:g} betas {case['betas']}", "loss": "SmoothL1 per layer",
              "repeats": args.repeats, "torch": torch.__version__, "decolle": _decolle_version(),
              "python": platform.python_version(), "cpus": os.cpu_count(),
              "load_1min_before": round(os.getloadavg()[0], 2)}
    stats: dict = {}

    def learn(gen, run_burnin):
        stats["loss"], stats["act_rate"] = utils.train(gen, decolle_loss, net, opt, 0, run_burnin,
                                                       online_update=True)

    def evaluate(gen):
        utils.test(gen, decolle_loss, net, 0, print_error=False)

    if "learn" in args.measure:
        walls, cpus = timed(lambda: learn(short, 0), args.repeats)
        result.update(learn_steps=args.learn_steps, learn_ms_per_step=_ms(walls, args.learn_steps),
                      learn_ms_per_sample_step=_ms(walls, args.learn_steps * args.batch),
                      learn_cpu_ms_per_step=_ms(cpus, args.learn_steps),
                      layer_activity=[round(float(a), 4) for a in stats["act_rate"]])
    if "eval" in args.measure:
        walls, cpus = timed(lambda: evaluate(short), args.repeats)
        result.update(eval_steps=args.learn_steps, eval_ms_per_step=_ms(walls, args.learn_steps),
                      eval_ms_per_sample_step=_ms(walls, args.learn_steps * args.batch),
                      eval_cpu_ms_per_step=_ms(cpus, args.learn_steps))
    if "sample" in args.measure:
        full = [synthetic_batch(np, rng, args.batch, steps, *shape)]
        walls, cpus = timed(lambda: learn(full, burnin), args.repeats)
        result.update(steps=steps, burnin=burnin, steps_run=1 + steps - burnin,
                      sample_s=round(statistics.median(walls), 3),
                      samples_per_s=float(f"{args.batch / statistics.median(walls):.3g}"),
                      sample_cpu_s=round(statistics.median(cpus), 3))
    result["load_1min_after"] = round(os.getloadavg()[0], 2)  # a shared machine: say how busy it was
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result), flush=True)
    return result


def _ms(times: list[float], per: int) -> float:
    return round(1e3 * statistics.median(times) / per, 3)


def _decolle_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("decolle")
    except metadata.PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    main()
