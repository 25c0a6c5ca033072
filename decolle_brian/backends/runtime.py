"""Brian2's runtime device: code generated for NumPy or Cython and run from Python, nothing compiled ahead."""

from __future__ import annotations

from pathlib import Path

from brian2 import Network, prefs, set_device

from decolle_brian.backends.base import Backend, RunValues, register_backend
from decolle_brian.errors import DeviceError
from decolle_brian.network.schedule import DT
from decolle_brian.network.spec import NetworkSpec


@register_backend("runtime")
class RuntimeBackend(Backend):
    """Every run restores the state stored after building, sets the chunk's values and runs in this process."""

    def make_current(self, spec: NetworkSpec, chunk_steps: int, tag: str, build_dir: str | Path | None) -> None:
        set_device("runtime")
        prefs.codegen.target = self.runtime_target

    def prepare(self, network: Network, namespace: dict, chunk_steps: int) -> None:
        network.store("initial")

    def run(self, network: Network, namespace: dict, chunk_steps: int, values: RunValues) -> None:
        if values.files:  # only a standalone backend's own input code reads files (its input_counts hook)
            raise DeviceError(f"The runtime device got input files {sorted(values.files)} it cannot read")
        network.restore("initial")
        for timed_array, array in values.arrays.items():
            timed_array.values[:] = array
        for owner, variable, value in values.params:
            getattr(owner, variable)[:] = value
        for owner, variable, value in values.constants:
            setattr(owner, variable, value)
        values.started()
        network.run(chunk_steps * DT, namespace=namespace, profile=self.profile or None)  # None: Brian's default
