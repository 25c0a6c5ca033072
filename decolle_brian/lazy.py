"""Names of a package loaded from its submodules on first use (PEP 562), so that importing the package is free.

Used where a package re-exports names whose modules are heavy (matplotlib, Brian2, sympy): importing the
package, or one light submodule of it, must not load the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str], namespace: dict) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``, whose name ``n`` lives in submodule ``exports[n]``.

    A name, once loaded, is stored in the package's ``namespace`` (its ``globals()``), so later look-ups
    do not come back here.
    """

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
