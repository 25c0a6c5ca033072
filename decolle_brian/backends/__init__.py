"""Device backends, chosen by device name: ``runtime``, ``cpp_standalone``, ``cuda_standalone``.

Each backend (:class:`~decolle_brian.backends.base.Backend`) owns one Brian device: setting it up,
device-specific code generation, preparing a built network and running it. The backend modules are
imported here, in one place, so that :data:`~decolle_brian.backends.base.BACKENDS` is complete.
"""

from decolle_brian.backends import cpp_standalone, cuda_standalone, runtime  # noqa: F401 - they register
from decolle_brian.backends.base import (
    BACKENDS,
    Backend,
    RunValues,
    backend_class,
    build_folder_lock,
    build_root,
    default_build_dir,
)
from decolle_brian.names import DEVICES

# the device names of the configuration (names.DEVICES) are the registered backends, no more, no less
if set(BACKENDS) != set(DEVICES):
    raise ImportError(f"Registered backends {sorted(BACKENDS)} differ from names.DEVICES {sorted(DEVICES)}")

__all__ = ["BACKENDS", "DEVICES", "Backend", "RunValues", "backend_class", "build_folder_lock", "build_root",
           "default_build_dir"]
