"""Which class builds what: layer builders by (mode, layer kind), network modes by name.

Each builder module registers its classes with the decorators here; :mod:`decolle_brian.network.catalog`
imports every such module, in one place, so that the tables are complete when a network is built::

    @layer_builder("exact", "dense")
    class DenseLayerBuilder(LayerBuilder): ...

    @network_mode("event")
    class EventMode(NetworkMode): ...
"""

from __future__ import annotations

from decolle_brian.registries import registrar

#: (mode, layer kind) -> LayerBuilder subclass
LAYER_BUILDERS: dict[tuple[str, str], type] = {}
#: mode name (NetworkSpec.mode) -> NetworkMode subclass
NETWORK_MODES: dict[str, type] = {}


#: class decorator ``@layer_builder(mode, kind)``: the builder of ``kind`` layers in networks of ``mode``
layer_builder = registrar(LAYER_BUILDERS, "layer builder for (mode, kind)")
#: class decorator ``@network_mode(name)``: the NetworkMode of networks with ``NetworkSpec.mode == name``
network_mode = registrar(NETWORK_MODES, "network mode", attribute="name")


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
