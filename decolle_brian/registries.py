"""Registries filled by class decorators: one helper for every "name -> class" table of the package.

Used by the device backends (:data:`decolle_brian.backends.base.BACKENDS`) and the network modes and layer
builders (:mod:`decolle_brian.network.registry`). A leaf: it imports nothing of the package.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable


def registrar(table: dict, what: str, attribute: str | None = None) -> Callable[..., Callable[[type], type]]:
    """A decorator factory registering classes in ``table``: ``@register(key)`` (or ``@register(*parts)``).

    Parameters
    ----------
    table : dict
        The registry, ``key -> class``.
    what : str
        What a class is, for the message when a key is registered twice.
    attribute : str, optional
        Class attribute set to the key (e.g. a backend's ``name``).
    """

    def register(*parts: Hashable) -> Callable[[type], type]:
        key = parts[0] if len(parts) == 1 else parts

        def decorate(cls: type) -> type:
            if key in table:
                raise ValueError(f"A {what} {key!r} is registered already")
            table[key] = cls
            if attribute is not None:
                setattr(cls, attribute, key)
            return cls

        return decorate

    return register
