"""Messages of the package through the standard :mod:`logging` module.

Every module logs to its own child of the logger ``decolle_brian`` (``logging.getLogger(__name__)``); the
library never prints. An application decides where messages go: the command line and a sweep's worker
use :func:`console_logging`, which prints every message of level INFO and above as a plain line on standard
output. A study script can do the same (``with console_logging(): train(...)``) or configure ``logging``
itself; without either, Python shows only warnings and errors (on standard error).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

#: the package's root logger; modules log to its children
LOGGER_NAME = "decolle_brian"


class ConsoleHandler(logging.Handler):
    """Plain lines on the current ``sys.stdout``, written around any tqdm bars (which draw on stderr).

    The stream is looked up at every message, not when the handler is made: a test's captured stdout, or a
    sweep worker's redirected one, gets the lines.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stdout)
            sys.stdout.flush()  # a redirected stdout (a sweep's worker.log) shows progress as it happens
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


@contextmanager
def console_logging(level: int = logging.INFO) -> Iterator[ConsoleHandler]:
    """Print the package's messages of ``level`` and above on stdout while the block runs."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = ConsoleHandler(level)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level, previous) if previous else level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
