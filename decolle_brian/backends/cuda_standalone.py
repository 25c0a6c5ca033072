"""brian2cuda's CUDA standalone device: the C++ standalone backend with brian2cuda's device and code.

brian2cuda's device subclasses Brian's C++ standalone device; this backend likewise subclasses
:class:`~decolle_brian.backends.cpp_standalone.CppStandaloneBackend` and changes only what differs: the
device set-up for current CUDA toolkits (:func:`decolle_brian.cuda.activate_cuda`), the one-clock check
before code is generated, the GPU check before every run, and Brian's generic (brian2cuda's) code instead
of the C++ dense-row and conv loops.
"""

from __future__ import annotations

from brian2 import Network

from decolle_brian.backends.base import RunValues, register_backend
from decolle_brian.backends.cpp_standalone import CppStandaloneBackend
from decolle_brian.cuda import activate_cuda, before_run_check, check_clocks, check_gpu_visible
from decolle_brian.network.hooks import CodeGeneration


@register_backend("cuda_standalone")
class CudaStandaloneBackend(CppStandaloneBackend):
    """Build with brian2cuda (nvcc), run on a GPU; the run files and results as the C++ backend's."""

    precompiled_header = False  # nvcc builds: g++'s precompiled header does not apply
    prune_array_cache = False  # brian2cuda's device keeps Brian's cache as it is (not checked against its code)
    selects_results = False  # brian2cuda's device (not backends/read_back.py's) writes every array after a run
    results_in_memory = False  # brian2cuda keeps its results in the build folder (in memory: not tried on a GPU)
    served = False  # brian2cuda generates its own main (and a forked child would need its own CUDA context)

    @classmethod
    def check_runnable(cls) -> None:
        check_gpu_visible()  # a training without a GPU stops before its run folder exists

    def set_device(self) -> None:
        activate_cuda(self.build_dir)

    def check_network(self, network: Network) -> None:
        check_clocks(network.objects)  # brian2cuda needs every object on one clock

    def run(self, network: Network, namespace: dict, chunk_steps: int, values: RunValues) -> None:
        before_run_check(self.build_dir)  # no GPU / wrong compute capability: say so, do not crash
        super().run(network, namespace, chunk_steps, values)

    # brian2cuda's own (Brian's generic) code wherever the C++ backend swaps in a C++ template: the dense
    # rows, the conv loops, the conv event scatter, the gated optimiser steps and the input events' scatter are
    # C++ code objects, which
    # brian2cuda cannot compile (it reads their .cu file)
    input_counts = CodeGeneration.input_counts  # the packed TimedArray, not the C++ event-list scatter
    all_to_all_connect = CodeGeneration.all_to_all_connect
    all_to_all_sums = CodeGeneration.all_to_all_sums
    all_to_all_pathway = CodeGeneration.all_to_all_pathway
    convolution = CodeGeneration.convolution
    conv_events = CodeGeneration.conv_events
    gated = CodeGeneration.gated
