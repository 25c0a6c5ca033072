"""``decolle-brian plot PATH``: draw the figures of a run folder (see :func:`~decolle_brian.plotting.run.plot_run`)."""

from __future__ import annotations

import sys
from pathlib import Path

from decolle_brian.errors import ConfigError, StoreError

EXIT_USAGE, EXIT_STORE = ConfigError.exit_code, StoreError.exit_code


def plot_command(args) -> int:
    """Entry point of the ``plot`` subcommand: ``args.path``, ``args.format``, ``args.out``; returns the exit code."""
    import matplotlib  # noqa: PLC0415 - keep --help fast

    matplotlib.use("Agg")  # files only: no display needed
    from decolle_brian.plotting.run import plot_run  # noqa: PLC0415
    from decolle_brian.plotting.style import parse_formats  # noqa: PLC0415

    path = Path(args.path)
    try:
        formats = parse_formats(args.format)
    except ValueError as exc:
        print(f"decolle-brian plot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not (path / "config.toml").is_file():
        runs = sorted({p.parent for pattern in ("*/config.toml", "*/*/config.toml") for p in path.glob(pattern)})
        if not runs:
            print(f"decolle-brian plot: {path} is not a run folder (no config.toml) and holds none", file=sys.stderr)
            return EXIT_STORE
        # a folder of runs (a sweep or runs/out/<name>): the figures of each run in its own folder
        for run in runs:
            out = Path(args.out) / run.relative_to(path) if args.out else None
            written = plot_run(run, out, formats)
            print(f"{run}: {len(written)} figure files in {written[0].parent if written else '-'}")
        return 0
    written = plot_run(path, args.out, formats)
    print(f"{len(written)} figure files written to {written[0].parent if written else args.out or path / 'figures'}")
    for p in written:
        print(f"  {p.name}")
    return 0
