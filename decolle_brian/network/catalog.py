"""Every layer builder and network mode of the package, imported in one place so that they register.

Import this module (not the builder modules one by one) before looking anything up in
:mod:`decolle_brian.network.registry`. A new layer kind or mode is a module that registers its classes,
added here.
"""

from decolle_brian.network import batch, conv, conv_event, event, event_batch, exact  # noqa: F401 - imported for their registrations
