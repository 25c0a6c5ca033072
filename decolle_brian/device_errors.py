"""The device error, in a leaf module (standard library only) so that both the Simulator's device layer and
the CUDA set-up (:mod:`decolle_brian.cuda`) raise it without importing each other."""


class DeviceError(RuntimeError):
    """A device that cannot be used here; the message says why and what to do."""
