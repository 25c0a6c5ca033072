"""Every error of the package, each with the exit status the ``decolle-brian`` command returns for it.

A leaf module (standard library only), so any layer can raise these without importing another layer; the
modules that used to define them re-export them (``from decolle_brian.config import ConfigError`` still
works). :func:`decolle_brian.cli.main` maps an exception to its exit status through :attr:`exit_code`
and prefixes the message with :attr:`label`:

====================  ====  ===========================================================================
error                 exit  meaning
====================  ====  ===========================================================================
ConfigError           2     a configuration that cannot be run (names the key and what it should be)
SpecError             2     a ConfigError: an impossible network or learning parameter (names the field)
SweepError            2     a ConfigError: a sweep that cannot run (names the sweep key)
DerivationError       2     a ConfigError: a loss, surrogate or optimiser that cannot become a rule
DataError             3     a data file or folder missing, malformed or inconsistent (names the file)
DeviceError           4     a device that cannot be used here (compiler, CUDA, GPU)
StoreError            5     a run folder or checkpoint that cannot be used or written (names the file)
Interrupted           128+  stopped by a signal after writing a checkpoint (130 SIGINT, 143 SIGTERM)
====================  ====  ===========================================================================
"""

from __future__ import annotations


class DecolleError(Exception):
    """Base of the package's errors: :attr:`exit_code` is the CLI's exit status, :attr:`label` its prefix."""

    exit_code: int = 1
    label: str = "error"


class ConfigError(DecolleError, ValueError):
    """A configuration that cannot be run; the message names the key and what it should be."""

    exit_code = 2
    label = "configuration error"


class SpecError(ConfigError):
    """An impossible network or learning parameter; the message names the field."""


class SweepError(ConfigError):
    """A sweep that cannot run; the message names the sweep key at fault."""


class DerivationError(ConfigError):
    """A loss, surrogate or optimiser that cannot be turned into a plasticity rule."""


class ExpressionError(DerivationError):
    """A loss or surrogate text outside the grammar of :mod:`decolle_brian.expressions` (quoted in the message)."""


class DataError(DecolleError, ValueError):
    """A data file or folder is missing, malformed or inconsistent.

    The message names the offending file and says how to fix it.
    """

    exit_code = 3
    label = "data error"


class ParamError(ValueError):
    """A data set's or encoder's parameter value outside what it accepts (``n_steps < 1``, an unknown encoder).

    A plain ``ValueError`` for direct callers of :mod:`decolle_brian.data`; a run's configuration names the table it
    came from (``data.params``) and turns it into a :class:`ConfigError`.
    """


class DeviceError(DecolleError, RuntimeError):
    """A device that cannot be used here; the message says why and what to do."""

    exit_code = 4
    label = "device error"


class StoreError(DecolleError, RuntimeError):
    """A run folder or checkpoint that cannot be used; the message names the file."""

    exit_code = 5
    label = "run store error"


class Interrupted(DecolleError, RuntimeError):
    """Training stopped by a signal after writing a checkpoint; ``code`` is the exit status to use (128 + signal)."""

    exit_code = 130  # SIGINT, unless the instance says otherwise
    label = ""  # the message says it all ("Stopped by SIGTERM ...; resume with ...")

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = self.exit_code = code


__all__ = ["ConfigError", "DataError", "DecolleError", "DerivationError", "DeviceError", "ExpressionError",
           "Interrupted", "ParamError", "SpecError", "StoreError", "SweepError"]
