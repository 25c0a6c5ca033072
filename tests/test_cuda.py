"""The CUDA device layer (``decolle_brian.cuda``): messages, build without a GPU, and (with a GPU) equivalence.

- Unit tests (no compiler, no GPU): the toolkit, the GPUs and brian2cuda are faked, so every error message
  is checked on any machine.
- ``cuda_build``: a small DECOLLE network is generated and compiled with nvcc for a target compute
  capability (``DECOLLE_CUDA_CC``, 9.0 when no GPU is found), then running it gives the clear no-GPU error
  (or, on a GPU machine, runs). It skips, saying why, where nvcc, brian2cuda or cuRAND is missing.
  nvcc is slow (about 10 s per source file on 2 cores; so: a one-layer network, every kind of code object
  once): the build folder is kept between sessions (under ``$DECOLLE_BUILD_DIR`` or the temp folder), so a
  rerun compiles only what changed (seconds). ``DECOLLE_CUDA_TEST_FRESH=1`` builds into a fresh folder.
- ``cuda``: cuda_standalone and cpp_standalone agree (spikes, membrane, readout, learned weights) on one
  learning sample; needs a GPU and skips without one.
"""

import gc
import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from brian2 import Clock, defaultclock, get_device, ms

from decolle_brian import cuda
from decolle_brian.backends.cuda_standalone import CudaStandaloneBackend
from decolle_brian.devices import DeviceError, Simulator, default_build_dir
from decolle_brian.network.batch import pack_batch
from decolle_brian.network.chunks import pack_chunk
from decolle_brian.network.params import init_params
from decolle_brian.network.schedule import DT
from decolle_brian.network.spec import ConvLayerSpec, DenseLayerSpec, LearningSpec, NetworkSpec

ARCHS = [7.5, 8.0, 8.6, 8.7, 8.8, 8.9, 9.0, 10.0, 10.3, 11.0, 12.0, 12.1]
H200 = {"index": 0, "name": "NVIDIA H200", "compute_capability": 9.0}
A100 = {"index": 0, "name": "NVIDIA A100-SXM4-80GB", "compute_capability": 8.0}
CURAND = {"source": "wheel", "include": "/fake/cu13/include", "lib": "/fake/cu13/lib",
          "library": "/fake/cu13/lib/libcurand.so.10", "wheel_dir": "cu13"}


# ---- a faked machine ------------------------------------------------------------------------------------------
@pytest.fixture
def machine(monkeypatch):
    """Fake toolkit/GPU/brian2cuda; returns a setter: machine(gpus=[...], nvcc=..., brian2cuda=..., ...)."""
    monkeypatch.delenv(cuda.ENV_CC, raising=False)

    def setup(gpus=(), driver_cuda="13.0", nvcc="/fake/cuda/bin/nvcc", nvcc_version="13.0", brian2cuda="1.0b1",
              curand=CURAND, gpu_source="driver"):
        monkeypatch.setattr(cuda, "find_nvcc", lambda: nvcc)
        monkeypatch.setattr(cuda, "_toolkit", lambda path: {
            "nvcc": path, "version": nvcc_version, "root": "/fake/cuda", "include_dirs": [], "library_dirs": [],
            "archs": ARCHS})
        monkeypatch.setattr(cuda, "find_curand", lambda path=None: curand)
        monkeypatch.setattr(cuda, "_brian2cuda_version",
                            lambda: (brian2cuda, None if brian2cuda else "not installed"))
        found = {"source": gpu_source if gpus else None, "driver_cuda": driver_cuda if gpus else None,
                 "gpus": [dict(g) for g in gpus]}
        monkeypatch.setattr(cuda, "find_gpus", lambda: found)
    return setup


@pytest.mark.parametrize("value, expected", [(9.0, 9.0), (8, 8.0), ("8.6", 8.6), ("9", 9.0), ("90", 9.0),
                                             ("sm_90", 9.0), ("sm_120", 12.0), ("compute_89", 8.9), (" 10.0 ", 10.0)])
def test_parse_compute_capability(value, expected):
    assert cuda.parse_compute_capability(value) == expected


@pytest.mark.parametrize("value", ["ampere", "9.0.1", "", True, "3.5", 2.0])
def test_parse_compute_capability_rejects(value):
    with pytest.raises(DeviceError, match="[Cc]ompute capability"):
        cuda.parse_compute_capability(value)


def test_env_compute_capability_is_checked(machine, monkeypatch):
    machine()
    monkeypatch.setenv(cuda.ENV_CC, "hopper")
    with pytest.raises(DeviceError, match="DECOLLE_CUDA_CC='hopper'"):
        cuda.check_cuda_available(require_gpu=False)


def test_no_brian2cuda_says_how_to_install(machine):
    machine(brian2cuda=None)
    with pytest.raises(DeviceError, match=r"brian2cuda.*pip install 'decolle-brian\[cuda\]'"):
        cuda.check_cuda_available(require_gpu=False, compute_capability=9.0)


def test_find_nvcc_none_without_toolkit(monkeypatch, tmp_path):
    for var in ("CUDA_PATH", "CUDA_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no nvcc on PATH
    monkeypatch.setattr(cuda, "DEFAULT_NVCC", tmp_path / "cuda" / "bin" / "nvcc")
    assert cuda.find_nvcc() is None
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert cuda.find_nvcc() is None


def test_find_nvcc_prefers_cuda_path(monkeypatch, tmp_path):
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.parent.mkdir()
    nvcc.write_text("#!/bin/sh\n")
    nvcc.chmod(0o755)
    monkeypatch.setenv("CUDA_PATH", str(tmp_path))
    assert cuda.find_nvcc() == str(nvcc)


def test_no_nvcc_message(machine):
    machine(nvcc=None)
    with pytest.raises(DeviceError, match="needs nvcc"):
        cuda.check_cuda_available(require_gpu=False, compute_capability=9.0)
    assert "no nvcc found" in cuda.cuda_summary_line()


def test_no_curand_message(machine):
    machine(curand=None)
    with pytest.raises(DeviceError, match="pip install nvidia-curand"):
        cuda.check_cuda_available(require_gpu=False, compute_capability=9.0)


def test_no_gpu_and_no_target_says_how_to_build(machine):
    machine()
    with pytest.raises(DeviceError, match="No CUDA GPU found.*DECOLLE_CUDA_CC=9.0"):
        cuda.check_cuda_available(require_gpu=False)


def test_no_gpu_with_target_builds(machine, monkeypatch):
    machine()
    monkeypatch.setenv(cuda.ENV_CC, "9.0")
    status = cuda.check_cuda_available(require_gpu=False)
    assert status["compute_capability"] == 9.0 and status["compute_capability_source"] == cuda.ENV_CC
    assert status["gpu_id"] == 0
    line = cuda.cuda_summary_line(status)
    assert "no GPU found (building only, for cc 9.0 from DECOLLE_CUDA_CC)" in line


def test_no_gpu_at_run_time(machine):
    machine()
    with pytest.raises(DeviceError, match="No CUDA GPU found.*needs a GPU to run"):
        cuda.check_cuda_available(require_gpu=True, compute_capability=9.0)
    with pytest.raises(DeviceError, match="No CUDA GPU found.*needs a GPU to run"):
        cuda.check_cuda_available(require_gpu=True)


def test_gpu_found_gives_target(machine):
    machine(gpus=[A100, dict(H200, index=1)])
    status = cuda.check_cuda_available(require_gpu=True)
    assert status["compute_capability"] == 9.0 and status["gpu_id"] == 1  # the best GPU, as brian2cuda picks
    assert "GPU 1 NVIDIA H200 (cc 9.0)" in cuda.cuda_summary_line(status)


def test_compute_capability_mismatch(machine):
    machine(gpus=[A100])
    with pytest.raises(DeviceError, match=r"mismatch.*compiled for 9.0 \(sm_90\).*A100.*8.0.*DECOLLE_CUDA_CC=8.0"):
        cuda.check_cuda_available(require_gpu=True, compute_capability=9.0)
    with pytest.warns(UserWarning, match="will not run here"):  # building for another machine is allowed
        cuda.check_cuda_available(require_gpu=False, compute_capability=9.0)


def test_newer_gpu_runs_older_target(machine):
    machine(gpus=[dict(H200, compute_capability=10.0)])
    cuda.check_cuda_available(require_gpu=True, compute_capability=9.0)  # PTX of sm_90 runs on 10.0


def test_old_driver(machine):
    machine(gpus=[H200], driver_cuda="12.4")
    with pytest.raises(DeviceError, match="driver supports CUDA 12.4.*nvcc 13.0"):
        cuda.check_cuda_available(require_gpu=True)


def test_target_nvcc_cannot_compile(machine):
    machine()
    with pytest.raises(DeviceError, match="cannot compile for compute capability 6.1"):
        cuda.check_cuda_available(require_gpu=False, compute_capability=6.1)


def test_detect_gpus_false_needs_target(machine, tmp_path):
    machine()
    with pytest.raises(DeviceError, match="detect_gpus=False needs a target compute capability"):
        cuda.activate_cuda(tmp_path, detect_gpus=False)


def _fake_project(folder: Path, arch="sm_90", gpu_id=0, binary=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "makefile").write_text(f"NVCCFLAGS = -I. -std=c++11 -arch={arch} -w -std=c++17\n")
    (folder / "main.cu").write_text(f"CUDA_SAFE_CALL(\n  cudaSetDevice({gpu_id})\n);\n")
    if binary:
        (folder / "main").write_text("")
    return folder


def test_gpus_from_nvidia_smi(monkeypatch, tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\nif [ "$1" = "" ]; then echo "| NVIDIA-SMI 580.159.03  Driver Version: 580.159.03  '
                   'CUDA Version: 13.0 |"; else printf "0, NVIDIA A100-SXM4-80GB, 8.0\\n1, NVIDIA H200, 9.0\\n"; fi\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(cuda, "_driver_gpus", lambda: None)  # no libcuda: nvidia-smi answers
    cuda.find_gpus.cache_clear()
    try:
        found = cuda.find_gpus()
        assert found["source"] == "nvidia-smi" and found["driver_cuda"] == "13.0"
        assert [(g["index"], g["name"], g["compute_capability"]) for g in found["gpus"]] == [
            (0, "NVIDIA A100-SXM4-80GB", 8.0), (1, "NVIDIA H200", 9.0)]
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # the runtime then numbers the H200 as GPU 0
        cuda.find_gpus.cache_clear()
        assert [(g["index"], g["name"]) for g in cuda.find_gpus()["gpus"]] == [(0, "NVIDIA H200")]
    finally:
        cuda.find_gpus.cache_clear()


def test_compiled_target(tmp_path):
    target = cuda.compiled_target(_fake_project(tmp_path, arch="sm_86", gpu_id=1))
    assert target["compute_capability"] == 8.6 and target["gpu_id"] == 1 and target["binary"]


def test_before_run_check_without_binary(machine, tmp_path):
    machine(gpus=[H200])
    with pytest.raises(DeviceError, match="No compiled CUDA binary"):
        cuda.before_run_check(_fake_project(tmp_path, binary=False))


def test_before_run_check_no_gpu(machine, tmp_path):
    machine()
    with pytest.raises(DeviceError, match="No CUDA GPU found.*needs a GPU to run"):
        cuda.before_run_check(_fake_project(tmp_path))


def test_before_run_check_gpu(machine, tmp_path):
    machine(gpus=[A100])
    with pytest.raises(DeviceError, match="mismatch"):
        cuda.before_run_check(_fake_project(tmp_path / "a", arch="sm_90"))
    cuda.before_run_check(_fake_project(tmp_path / "b", arch="sm_80"))
    with pytest.raises(DeviceError, match="compiled to use GPU 1"):
        cuda.before_run_check(_fake_project(tmp_path / "c", arch="sm_80", gpu_id=1))


def test_stale_objects_are_forgotten(tmp_path):
    info = {"compute_capability": 9.0, "gpu_id": 0, "nvcc": "/x/nvcc", "nvcc_version": "13.0", "nvcc_flags": ["-w"],
            "host_flags": ["-O3"], "curand": CURAND}
    (tmp_path / cuda.BUILD_INFO).write_text(json.dumps(info))
    objects = [tmp_path / "main.o", tmp_path / "code_objects" / "a.o", tmp_path / "main"]
    objects[1].parent.mkdir()
    for p in objects:
        p.write_text("")
    cuda._forget_stale_objects(tmp_path, info)  # same target and flags: make may reuse them
    assert all(p.exists() for p in objects)
    cuda._forget_stale_objects(tmp_path, dict(info, compute_capability=8.0))
    assert not any(p.exists() for p in objects)


def test_curand_link_dir(tmp_path):
    lib = tmp_path / "wheel" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcurand.so.10").write_text("")
    curand = dict(CURAND, lib=str(lib), library=str(lib / "libcurand.so.10"))
    (tmp_path / "build").mkdir()
    link_dir = Path(cuda._curand_link_dir(tmp_path / "build", curand))
    assert (link_dir / "libcurand.so").resolve() == (lib / "libcurand.so.10").resolve()
    assert cuda._curand_link_dir(tmp_path / "build", curand) == str(link_dir)  # again: replaced, not an error


@pytest.fixture
def brian_prefs():
    """Restore what activate_cuda changes process-wide (host flags), so later C++ builds see Brian's own."""
    from brian2 import prefs

    saved = list(prefs.codegen.cpp.extra_compile_args_gcc)
    yield prefs
    prefs.codegen.cpp.extra_compile_args_gcc = saved


def test_activate_cuda_sets_prefs(tmp_path, brian_prefs):
    status = _skip_without_cuda_build()
    from brian2 import get_device, set_device

    try:
        info = cuda.activate_cuda(tmp_path, compute_capability="sm_90")
        backend = brian_prefs.devices.cuda_standalone.cuda_backend
        assert get_device().__class__.__name__ == "CUDAStandaloneDevice"
        assert backend.detect_gpus is False and backend.compute_capability == 9.0 and info["gpu_id"] == 0
        assert cuda.CXX_STD in backend.extra_compile_args_nvcc
        assert brian_prefs.codegen.cpp.extra_compile_args_gcc[-1] == cuda.CXX_STD
        assert not any(f == "-std=c++11" for f in brian_prefs.codegen.cpp.extra_compile_args_gcc)
        assert json.loads((tmp_path / cuda.BUILD_INFO).read_text())["compute_capability"] == 9.0
        if status["curand"]["source"] == "wheel":
            assert (tmp_path / "curand_link" / "libcurand.so").exists()
            assert status["curand"]["lib"] in get_device().runtime_library_dirs
    finally:
        get_device().reinit()
        set_device("runtime")


def test_check_clocks():
    on_default = SimpleNamespace(name="on_default", clock=defaultclock)
    elsewhere = SimpleNamespace(name="elsewhere", clock=Clock(dt=0.5 * ms, name="other_clock"))
    cuda.check_clocks([on_default])
    with pytest.raises(DeviceError, match="elsewhere"):
        cuda.check_clocks([on_default, elsewhere])


def test_status_of_this_machine():
    status = cuda.cuda_status()  # whatever is here: must not raise
    for key in ("nvcc", "nvcc_version", "gpus", "compute_capability", "brian2cuda", "curand", "driver_cuda"):
        assert key in status
    line = cuda.cuda_summary_line(status)
    assert line.startswith("CUDA: ") and "\n" not in line


# ---- the real thing -------------------------------------------------------------------------------------------
def small_spec(layers: int = 2, **learning) -> NetworkSpec:
    return NetworkSpec(n_inputs=20, layers=(DenseLayerSpec(10), DenseLayerSpec(8))[:layers], n_classes=3,
                       learning=LearningSpec(optimizer="sgd", dropout=0.0, **learning))


def small_chunk(spec: NetworkSpec, steps: int, *, learn: bool, seed: int = 3):
    rng = np.random.default_rng(seed)
    params = init_params(spec, rng)
    for k in range(1, len(spec.layers) + 1):
        params[f"layer{k}.W"] *= 3.0  # strong enough that the layers fire
    counts = rng.poisson(0.3, (steps, spec.n_inputs)).astype(float)
    inputs, _ = pack_chunk([(counts, 1)], steps, spec.n_classes, lr=spec.learning.lr, burnin=10, learn=learn,
                           dropout=spec.learning.dropout, layer_sizes=[layer.n for layer in spec.layers], rng=rng)
    return inputs, params


def _skip_without_cuda_build():
    status = cuda.cuda_status()
    if status["brian2cuda"] is None:
        pytest.skip(f"brian2cuda is not installed ({cuda.INSTALL_HINT})")
    if not status["nvcc"]:
        pytest.skip("nvcc (CUDA toolkit) not found: cannot compile CUDA code here")
    if not status["curand"]:
        pytest.skip("cuRAND headers/library not found (pip install nvidia-curand)")
    return status


def _build_folder(spec: NetworkSpec, steps: int, tmp_path: Path, name: str = "build", tag: str = "-test") -> Path:
    """The kept per-structure test folder (a rerun compiles only what changed), or a fresh one on request."""
    return (tmp_path / name if os.environ.get("DECOLLE_CUDA_TEST_FRESH")
            else default_build_dir(spec, "cuda_standalone", steps, tag))


def _target_without_gpu(monkeypatch, status) -> None:
    if not status["gpus"] and status["compute_capability"] is None:
        monkeypatch.setenv(cuda.ENV_CC, "9.0")  # build for an H100/H200 without a GPU here


def _sources(build_dir: Path) -> list[Path]:
    return sorted((build_dir / "code_objects").glob("*.cu")) + sorted(build_dir.glob("*.cu"))


def _assert_compiled(build_dir: Path, sim: Simulator) -> None:
    """The project was generated for the target and the binary compiled from these very sources."""
    sources = _sources(build_dir)
    assert (build_dir / "main.cu").is_file()
    makefile = (build_dir / "makefile").read_text()
    expected_cc = cuda.cuda_status()["compute_capability"]
    assert cuda.CXX_STD in makefile and f"-arch={cuda._sm(expected_cc)}" in makefile
    binary = build_dir / "main"
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert binary.stat().st_mtime >= max(p.stat().st_mtime for p in sources)
    if shutil.which("ldd"):
        libs = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
        assert "libcurand" in libs and "not found" not in libs, libs
    cuda.check_clocks(sim.network.objects)


def _assert_no_gpu_error(sim: Simulator, build_dir: Path, inputs, params) -> None:
    with pytest.raises(DeviceError, match="No CUDA GPU found"):
        cuda.before_run_check(build_dir)
    # Simulator.run_chunk calls before_run_check for cuda_standalone: the clear error, not a CUDA one
    with pytest.raises(DeviceError, match="GPU"):
        sim.run_chunk(inputs, params)


@pytest.mark.cuda_build
@pytest.mark.slow
def test_build_small_network_then_run(monkeypatch, tmp_path, brian_prefs):
    status = _skip_without_cuda_build()
    _target_without_gpu(monkeypatch, status)
    # one layer: every kind of code object of a DECOLLE network, each once (nvcc takes ~10 s per file)
    spec, steps = small_spec(layers=1), 50
    build_dir = _build_folder(spec, steps, tmp_path)
    sim = Simulator(spec, chunk_steps=steps, device="cuda_standalone", build_dir=build_dir)
    assert any("layer1_learn" in p.name for p in _sources(build_dir))
    _assert_compiled(build_dir, sim)

    inputs, params = small_chunk(spec, steps, learn=True)
    if not cuda.find_gpus()["gpus"]:
        _assert_no_gpu_error(sim, build_dir, inputs, params)
    else:
        out = sim.run_chunk(inputs, params)
        assert all(np.all(np.isfinite(y)) for y in out.y)
        assert any(n.sum() > 0 for n in out.n_spikes)


# ---- conv layers and batches -----------------------------------------------------------------------------------
#: set to 1 to build the batched and conv networks below without a GPU (nvcc only; figures in docs/cuda.md)
ENV_BUILD_ALL = "DECOLLE_CUDA_TEST_ALL"
BATCH = 4


def batched_spec() -> NetworkSpec:
    """A batched dense layer (B = 4): built by the conv layer builder (a 1 x 1 convolution over the batch)."""
    return NetworkSpec(n_inputs=20, layers=(DenseLayerSpec(10),), n_classes=3, batch_size=BATCH,
                       learning=LearningSpec(optimizer="adamax", lr=1e-3, dropout=0.5, burnin=10))


def conv_spec() -> NetworkSpec:
    """A conv layer as DvsGesture's first: kernel, zero padding and a 2 x 2 max-pool (batch 1)."""
    conv = ConvLayerSpec(channels=3, kernel=3, in_shape=(2, 6, 6), padding=1, pool=2)
    return NetworkSpec(n_inputs=72, input_shape=(2, 6, 6), layers=(conv,), n_classes=3,
                       learning=LearningSpec(optimizer="adamax", lr=1e-3, dropout=0.5, burnin=10))


def batched_conv_spec() -> NetworkSpec:
    """The conv layer of :func:`conv_spec` and a dense layer after it, batched (B = 4): the conv builder's batch."""
    return replace(conv_spec(), layers=(*conv_spec().layers, DenseLayerSpec(5)), batch_size=BATCH)


def _code_objects() -> dict[str, str]:
    """Template of every code object of the current standalone project, by name."""
    return {name: obj.template_name for name, obj in get_device().code_objects.items()}


def _numbers_aside(path: Path) -> str:
    """A generated source with its number literals masked: sizes and constants differ between networks."""
    return re.sub(r"\b\d+(\.\d+)?\b", "#", path.read_text())


def _generate_only(monkeypatch) -> None:
    """cuda_standalone writes its project (code generation, makefile) but does not compile it."""
    def prepare(self, network, namespace, chunk_steps):
        self.check_network(network)
        network.run(chunk_steps * DT, namespace=namespace)
        self.device.build(directory=str(self.build_dir), compile=False, run=False, with_output=False)

    monkeypatch.setattr(CudaStandaloneBackend, "prepare", prepare)


@pytest.mark.cuda
@pytest.mark.parametrize("spec", [batched_spec(), conv_spec(), replace(conv_spec(), mode="event"), batched_conv_spec()],
                         ids=["batched", "conv", "conv-event", "batched-conv"])
def test_conv_builder_generates_cuda_code_only(spec, monkeypatch, tmp_path, brian_prefs):
    """Code generation (no nvcc, so in CI) of the conv builder's networks on cuda_standalone: every code object
    is brian2cuda's own, none of the C++ backend's templates (conv loops, event scatter, gated steps), which
    brian2cuda cannot compile."""
    _target_without_gpu(monkeypatch, _skip_without_cuda_build())
    _generate_only(monkeypatch)
    Simulator(spec, chunk_steps=20, device="cuda_standalone", build_dir=tmp_path / "generated")
    objects = get_device().code_objects.values()
    foreign = [obj.name for obj in objects if not hasattr(obj.code, "cu_file")]
    assert not foreign, f"C++ code objects in a CUDA project: {foreign}"
    assert (tmp_path / "generated" / "code_objects").is_dir()


@pytest.mark.cuda_build
@pytest.mark.cuda
@pytest.mark.slow
def test_build_batched_and_conv_networks(monkeypatch, tmp_path, brian_prefs):
    """The CUDA path of the conv layer builder, for batches and for conv layers, with as little nvcc as it takes.

    Two networks: the batched dense layer, compiled in full (it is built by the conv builder: every kind of code
    object a conv layer has), then the conv layer with padding
    and a 2 x 2 max-pool, generated, of which nvcc compiles only the sources that the batched build did not
    already compile (numbers aside): the max over the window, its index setters, ... On a GPU the batched
    network runs and must equal C++ standalone. Without a GPU it runs only with ``DECOLLE_CUDA_TEST_ALL=1``
    (several minutes of nvcc on 2 cores, figures in docs/cuda.md).
    """
    status = _skip_without_cuda_build()
    gpu = bool(cuda.find_gpus()["gpus"])
    if not gpu and not os.environ.get(ENV_BUILD_ALL):
        pytest.skip(f"no CUDA GPU here; set {ENV_BUILD_ALL}=1 to build the batched and conv networks anyway "
                    "(minutes of nvcc)")
    _target_without_gpu(monkeypatch, status)
    steps = 50
    spec = batched_spec()
    build_dir = _build_folder(spec, steps, tmp_path, "batched")
    sim = Simulator(spec, chunk_steps=steps, device="cuda_standalone", build_dir=build_dir)
    batched_templates = set(_code_objects().values())
    assert {"layer1_kernel_learn_codeobject", "forward1_summed_variable_gw_pre_codeobject"} <= set(
        _code_objects())  # the conv builder's shared kernel, its step and its summed gradient
    _assert_compiled(build_dir, sim)
    compiled = {_numbers_aside(p) for p in _sources(build_dir)}

    rng = np.random.default_rng(4)
    params = init_params(spec, rng)
    params["layer1.W"] *= 3.0  # strong enough that the layer fires
    samples = [(rng.poisson(0.3, (steps, spec.n_inputs)).astype(float), b % spec.n_classes) for b in range(BATCH)]
    inputs = pack_batch(samples, steps, spec.n_classes, lr=spec.learning.lr, burnin=spec.learning.burnin,
                        learn=True, dropout=spec.learning.dropout, layer_sizes=[10], rng=rng)
    if not gpu:
        _assert_no_gpu_error(sim, build_dir, inputs, params)
    else:
        out = sim.run_chunk(inputs, {k: v.copy() for k, v in params.items()})
        cpu = Simulator(spec, steps, device="cpp_standalone", build_dir=tmp_path / "cpp").run_chunk(
            inputs, {k: v.copy() for k, v in params.items()})  # the Simulator itself is dropped here
        assert cpu.n_spikes[0].sum() > 0, "silent layer: the comparison would be weak"
        np.testing.assert_array_equal(out.n_spikes[0], cpu.n_spikes[0])
        np.testing.assert_allclose(out.y[0], cpu.y[0], rtol=0, atol=1e-9)
        assert not np.allclose(cpu.params["layer1.W"], params["layer1.W"]), "no learning: weak comparison"
        for key, value in cpu.params.items():
            np.testing.assert_allclose(out.params[key], value, rtol=1e-6, atol=1e-12, err_msg=key)

    # the conv layer: generated; its code objects are of the kinds just compiled, and nvcc compiles the rest
    del sim
    gc.collect()  # frees the code object names: Brian would name the conv network's "..._codeobject_1"
    _generate_only(monkeypatch)
    conv_dir = _build_folder(conv_spec(), steps, tmp_path, "conv", "-test-generated")
    Simulator(conv_spec(), chunk_steps=steps, device="cuda_standalone", build_dir=conv_dir)
    conv_templates = _code_objects()
    assert {"layer1_max_codeobject", "layer1_full_store_codeobject",
            "forward1_summed_variable_u_syn_post_codeobject"} <= set(conv_templates)
    assert set(conv_templates.values()) <= batched_templates, set(conv_templates.values()) - batched_templates
    new = [p for p in _sources(conv_dir) if _numbers_aside(p) not in compiled]
    assert any(p.name == "layer1_max_codeobject.cu" for p in new)  # the max over a 2 x 2 window
    targets = [str(p.relative_to(conv_dir).with_suffix(".o")) for p in new]
    make = subprocess.run(["make", f"-j{os.cpu_count() or 1}", *targets], cwd=conv_dir, capture_output=True,
                          text=True)
    assert make.returncode == 0, make.stdout[-3000:] + make.stderr[-3000:]
    assert all((conv_dir / t).is_file() for t in targets)


@pytest.mark.cuda
@pytest.mark.slow
def test_cuda_matches_cpp_standalone(tmp_path, brian_prefs):
    status = _skip_without_cuda_build()
    if not cuda.find_gpus()["gpus"]:
        pytest.skip(f"no CUDA GPU here ({cuda.cuda_summary_line(status)})")
    spec = NetworkSpec(n_inputs=40, layers=(DenseLayerSpec(30), DenseLayerSpec(20), DenseLayerSpec(12)),
                       n_classes=4, learning=LearningSpec(optimizer="adamax", lr=1e-3, dropout=0.5, burnin=20))
    steps = 200
    inputs, params = small_chunk(spec, steps, learn=True, seed=5)
    outs = {}
    for device in ("cpp_standalone", "cuda_standalone"):  # one standalone device per process: one after the other
        sim = Simulator(spec, steps, device=device, build_dir=tmp_path / device, probes=("u", "s"))
        outs[device] = sim.run_chunk(inputs, {k: v.copy() for k, v in params.items()})
    cpu, gpu = outs["cpp_standalone"], outs["cuda_standalone"]
    for k in range(len(spec.layers)):
        assert cpu.probes[k]["s"].sum() > 0, f"layer {k + 1} silent: test would be weak"
        np.testing.assert_array_equal(gpu.probes[k]["s"], cpu.probes[k]["s"], err_msg=f"spikes of layer {k + 1}")
        np.testing.assert_allclose(gpu.probes[k]["u"], cpu.probes[k]["u"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(gpu.y[k], cpu.y[k], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(gpu.n_spikes[k], cpu.n_spikes[k])
    for key, value in cpu.params.items():
        assert not (key.endswith(".W") and np.allclose(value, params[key])), f"{key} did not learn"
        np.testing.assert_allclose(gpu.params[key], value, rtol=1e-6, atol=1e-12, err_msg=key)
