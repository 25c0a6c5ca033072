"""The ``decolle-brian`` command line.

Exit codes: 0 success; 2 bad usage or configuration; 3 data missing or malformed; 4 device unusable
(compiler, CUDA, GPU); 5 run store problem (unwritable folder, corrupt or foreign checkpoint);
128 + signal number when stopped by SIGINT (130) or SIGTERM (143) after writing a checkpoint. Each error
class of :mod:`decolle_brian.errors` carries its exit code (``exit_code``), so new errors need no new branch here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from decolle_brian.errors import DecolleError
from decolle_brian.names import DEVICES, LOSSES, OPTIMIZERS, SURROGATES


def _train(args) -> int:
    from decolle_brian.config import load_config  # noqa: PLC0415 - keep --help fast
    from decolle_brian.experiment import train  # noqa: PLC0415

    if args.config is None and args.resume is None:
        raise _Usage("train needs a CONFIG file or --resume RUN_DIR")
    overrides = list(args.set or [])
    if args.device:
        overrides.append(f'device.name="{args.device}"')
    if args.threads:
        overrides.append(f"device.threads={args.threads}")
    config = load_config(args.config, overrides) if args.config else None
    if args.resume and overrides and config is None:
        raise _Usage("--set/--device/--threads cannot change a resumed run; the stored config.toml is used")
    train(config, args.out, resume=args.resume, data_root=args.data)
    return 0


def _eval(args) -> int:
    from decolle_brian.experiment import evaluate_run  # noqa: PLC0415

    evaluate_run(args.run_dir, data_root=args.data, device=args.device, split=args.split, overrides=args.set or ())
    return 0


def _derive(args) -> int:
    from decolle_brian.derivation import derive  # noqa: PLC0415
    from decolle_brian.emission import describe  # noqa: PLC0415

    params = {}
    for item in args.param or []:
        key, _, value = item.partition("=")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise _Usage(f"--param {item!r}: expected name=number, e.g. slope=10") from None
    rule = derive(args.loss, args.surrogate, **params)
    print(describe(rule, args.optimizer))
    return 0


def _schema(args) -> int:
    from decolle_brian.config import main as write_schema  # noqa: PLC0415

    return write_schema([args.out] if args.out else [])


def _info(args) -> int:
    from decolle_brian.info import info_lines  # noqa: PLC0415

    print("\n".join(info_lines()))
    return 0


def _plot(args) -> int:
    from decolle_brian.sweep.folder import is_sweep_dir  # noqa: PLC0415

    if is_sweep_dir(args.path):  # a sweep folder: its summary figures (the sweep layer draws them)
        from decolle_brian.sweep.plots import plot_command as plot_sweep  # noqa: PLC0415

        return plot_sweep(args)
    from decolle_brian.plotting.cli import plot_command  # noqa: PLC0415

    return plot_command(args)


def _sweep(args) -> int:
    from decolle_brian.sweep.cli import sweep_command  # noqa: PLC0415

    return sweep_command(args)


def _export(args) -> int:
    from decolle_brian.export import EXPORTERS  # noqa: PLC0415 - no Brian2, no sympy

    path = EXPORTERS[args.format](args.run_dir, args.out, data_root=args.data, time_constants=args.time_constants)
    print(f"{args.format} graph of {args.run_dir} written to {path}")
    return 0


class _Usage(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    """The ``decolle-brian`` argument parser: one sub-command per job (the CLI reference is generated from it)."""
    parser = argparse.ArgumentParser(prog="decolle-brian", description=(
        "DECOLLE deep continuous local learning as Brian2 simulations: train, evaluate, derive the plasticity "
        "rule, inspect the installation, plot, sweep and export."))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a configuration (or resume a run)",
                       description="Train a TOML configuration online; outputs go to OUT/<name>/<timestamp>/.")
    p.add_argument("config", nargs="?", help="TOML configuration (e.g. runs/digits.toml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key, e.g. learning.lr=1e-4")
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--threads", type=int, help="OpenMP threads of the C++ standalone device")
    p.add_argument("--out", default="runs/out", help="root of the run store (default runs/out)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--data", metavar="ROOT", help="data folder (overrides data.root)")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a stored run", description="Evaluate a run's checkpoint.")
    p.add_argument("run_dir")
    p.add_argument("--data", metavar="ROOT", help="data folder (overrides the run's data.root)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change a data.* or device.* key for this evaluation, e.g. data.test_params.n_steps=150 "
                        "(result in eval_<split>_<digest>.json)")
    p.set_defaults(func=_eval)

    p = sub.add_parser("derive", help="print the plasticity rule derived for a loss and surrogate",
                       description="Derive the DECOLLE rule symbolically and print it as math and as Brian2 code.")
    p.add_argument("--loss", default="smoothl1", help=f"{', '.join(LOSSES)}, or an expression of y and target")
    p.add_argument("--surrogate", default="fast_sigmoid",
                   help=f"{', '.join(SURROGATES)}, or an expression of u")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="surrogate parameter, e.g. slope=10")
    p.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS)
    p.set_defaults(func=_derive)

    p = sub.add_parser("schema", help="JSON schema of configuration files (for editors)",
                       description="Write the JSON schema of a configuration file: every key, its type, default, "
                       "bounds and description (e.g. for an editor's TOML language server).")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.set_defaults(func=_schema)

    p = sub.add_parser("info", help="versions, devices, compilers, data found")
    p.set_defaults(func=_info)

    p = sub.add_parser("plot", help="figures of a run or a sweep", description="Draw the figures of a run folder "
                       "(or a sweep folder) from what it stored.")
    p.add_argument("path", help="run folder or sweep folder")
    p.add_argument("--format", default="png", help="png, pdf or svg (comma-separated for several)")
    p.add_argument("--out", help="figure folder (default: <path>/figures)")
    p.set_defaults(func=_plot)

    p = sub.add_parser("export", help="the trained network for other simulators and hardware (NIR)",
                       description="Write a run's trained network (its checkpoint) in an interchange format: nir, "
                       "the Neuromorphic Intermediate Representation (docs/nir.md says what is exported and how "
                       "exactly). Needs no Brian2 and no compiler.")
    p.add_argument("run_dir")
    p.add_argument("--format", choices=("nir",), default="nir")
    p.add_argument("--out", metavar="FILE", help="file to write (default: RUN_DIR/network.nir)")
    p.add_argument("--data", metavar="ROOT", help="data folder (overrides the run's data.root; gives the input shape)")
    p.add_argument("--time-constants", choices=("exact", "euler"), default="exact",
                   help="exact: tau = -dt/ln(decay), DECOLLE's steps for an exponential-Euler reader (default); "
                   "euler: tau = dt/(1 - decay), DECOLLE's steps for a forward-Euler reader")
    p.set_defaults(func=_export)

    p = sub.add_parser("sweep", help="parameter sweeps, locally or on a Dask cluster")
    p.add_argument("spec", nargs="?", help="sweep TOML (runs/sweeps/*.toml)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler, e.g. tcp://host:8786")
    p.add_argument("--dask-local", action="store_true", help="start a Dask LocalCluster")
    p.add_argument("--out", default="runs/out/sweeps")
    p.add_argument("--resume", metavar="SWEEP_DIR")
    p.set_defaults(func=_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``decolle-brian`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from decolle_brian.logs import console_logging  # noqa: PLC0415

    try:
        with console_logging():  # the package's messages as plain lines on stdout
            return args.func(args)
    except _Usage as exc:
        parser.error(str(exc))
    except DecolleError as exc:  # each error class carries its exit status (decolle_brian.errors)
        prefix = f"{exc.label}: " if exc.label else ""
        print(f"decolle-brian: {prefix}{exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["main", "build_parser", "Path"]
