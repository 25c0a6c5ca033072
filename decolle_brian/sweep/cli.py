"""``decolle-brian sweep SPEC [--workers N] [--scheduler ADDRESS | --dask-local] [--out DIR] [--resume SWEEP_DIR]``."""

from __future__ import annotations


def sweep_command(args) -> int:
    """Run (or resume) a sweep from parsed command-line arguments; returns the exit status.

    0: every point done; 1: some points failed (each with its error in ``sweep.csv``; the others ran).
    Errors propagate as the CLI maps them: ``SweepError`` (a ``ConfigError``) -> 2 before any point runs,
    a stopped sweep (``Interrupted``) -> 128 + signal number.
    """
    from decolle_brian.sweep.execute import SweepDir, run_sweep  # noqa: PLC0415

    path = run_sweep(args.spec, args.out, workers=args.workers, scheduler=args.scheduler,
                     dask_local=args.dask_local, resume=args.resume)
    return 1 if SweepDir.open(path).counts()["failed"] else 0
