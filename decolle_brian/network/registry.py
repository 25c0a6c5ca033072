"""Which class builds what: layer builders by (mode, layer kind), network modes by name.

Each builder module registers its classes with the decorators here; :mod:`decolle_brian.network.catalog`
imports every such module, in one place, so that the tables are complete when a network is built::

    @layer_builder("exact", "dense")
    class DenseLayerBuilder(LayerBuilder): ...

    @network_mode("event")
    class EventMode(NetworkMode): ...
"""

from __future__ import annotations

#: (mode, layer kind) -> LayerBuilder subclass
LAYER_BUILDERS: dict[tuple[str, str], type] = {}
#: mode name (NetworkSpec.mode) -> NetworkMode subclass
NETWORK_MODES: dict[str, type] = {}


def layer_builder(mode: str, kind: str):
    """Class decorator: register the builder of layers of ``kind`` in networks of ``mode``."""

    def register(cls: type) -> type:
        if (mode, kind) in LAYER_BUILDERS:
            raise ValueError(f"A layer builder for mode {mode!r}, kind {kind!r} is registered already")
        LAYER_BUILDERS[(mode, kind)] = cls
        return cls

    return register


def network_mode(name: str):
    """Class decorator: register the NetworkMode of networks with ``NetworkSpec.mode == name``."""

    def register(cls: type) -> type:
        if name in NETWORK_MODES:
            raise ValueError(f"A network mode {name!r} is registered already")
        NETWORK_MODES[name] = cls
        cls.name = name
        return cls

    return register


def layer_builder_for(mode: str, kind: str) -> type:
    """The registered builder of ``kind`` layers in ``mode`` networks (ValueError naming the choices)."""
    try:
        return LAYER_BUILDERS[(mode, kind)]
    except KeyError:
        kinds = sorted(k for m, k in LAYER_BUILDERS if m == mode)
        raise ValueError(f"Mode {mode!r} has no builder for layers of kind {kind!r}; it builds {kinds}") from None


def network_mode_for(name: str) -> type:
    """The registered NetworkMode called ``name`` (ValueError naming the choices)."""
    try:
        return NETWORK_MODES[name]
    except KeyError:
        raise ValueError(f"Unknown network mode {name!r}; choose one of {sorted(NETWORK_MODES)}") from None
