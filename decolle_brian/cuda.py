"""CUDA device layer: brian2cuda's ``cuda_standalone`` device set up for current CUDA toolkits.

brian2cuda 1.0b1 was written for CUDA 11. On a current toolkit (CUDA 12/13) and on a machine without a GPU
it needs, and this module sets:

- ``-std=c++17`` for nvcc and for the host compiler: brian2cuda's makefile hard-codes ``-std=c++11`` and
  Brian's default host flags end with ``-std=c++11``, but the Thrust/CCCL headers of CUDA >= 12 refuse
  anything below C++17. nvcc takes the last ``-std`` it is given, so appending is enough for nvcc; the host
  flag is replaced in ``prefs.codegen.cpp.extra_compile_args_gcc`` (it is passed through ``-Xcompiler``).
- cuRAND headers and library: brian2cuda always links ``-lcurand``, which pip-installed toolkits lack. They
  come from the ``nvidia-curand`` wheel (CUDA 13: ``nvidia/cu13``; ``nvidia-curand-cu12``: ``nvidia/curand``).
  The wheel ships only ``libcurand.so.10``, so a ``libcurand.so`` link is made inside the build folder for
  the linker, and the wheel's folder goes into the binary's rpath for the loader.
- GPU detection that can be switched off: with an explicit compute capability (argument, or the
  environment variable ``DECOLLE_CUDA_CC``) nothing asks for a GPU, so the code is generated and compiled on
  a machine without one. Otherwise the GPUs are found through the CUDA driver (or ``nvidia-smi``).
- Clear errors (:class:`decolle_brian.errors.DeviceError`) before a long compile, and before running a
  compiled network (:func:`before_run_check`): no nvcc, no brian2cuda, no cuRAND, no GPU, a GPU older than
  the compiled target, a driver older than the toolkit.

brian2cuda needs every object on one clock; the network builder puts everything on ``defaultclock``
(:func:`check_clocks` says so if not).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

from decolle_brian.errors import DeviceError

#: environment variable: target compute capability, e.g. "9.0" (H100/H200) or "8.0" (A100)
ENV_CC = "DECOLLE_CUDA_CC"
#: the C++ standard CUDA >= 12 (Thrust/CCCL) needs; brian2cuda hard-codes c++11
CXX_STD = "-std=c++17"
#: brian2cuda's own nvcc defaults (prefs.devices.cuda_standalone.cuda_backend.extra_compile_args_nvcc)
NVCC_DEFAULT_FLAGS = ("-w", "-use_fast_math")
#: brian2cuda refuses anything below this
MIN_COMPUTE_CAPABILITY = 5.0
#: written into the build folder: what the binary was compiled for (read back by before_run_check)
BUILD_INFO = "decolle_cuda_build.json"
INSTALL_HINT = "pip install 'decolle-brian[cuda]'"
#: where a CUDA toolkit usually is when nothing else says
DEFAULT_NVCC = Path("/usr/local/cuda/bin/nvcc")

_checked_builds: set[tuple[str, float]] = set()  # build folders that passed before_run_check (binary mtime)


# ---- compute capability ----------------------------------------------------------------------------------------
def parse_compute_capability(value) -> float:
    """Read a compute capability given as ``9.0``, ``"9.0"``, ``"9"``, ``"90"`` or ``"sm_90"``.

    Parameters
    ----------
    value : float, int or str

    Returns
    -------
    float
        Major + minor / 10, as brian2cuda's ``compute_capability`` preference wants it.
    """
    if isinstance(value, bool):
        raise DeviceError(f"Invalid compute capability {value!r}")
    if isinstance(value, int | float):
        cc = float(value)
    else:
        text = str(value).strip().lower()
        m = re.fullmatch(r"(\d+)\.(\d)", text)
        if m:
            cc = int(m[1]) + int(m[2]) / 10
        else:
            m = re.fullmatch(r"(?:sm_|compute_)?(\d+)", text)
            if not m:
                raise DeviceError(f"Invalid compute capability {value!r}: write it as major.minor, e.g. 9.0 or 8.6")
            digits = m[1]
            # "9" is a major version; "90", "sm_90", "120" are major digits + one minor digit
            cc = float(digits) if len(digits) == 1 else int(digits[:-1]) + int(digits[-1]) / 10
    cc = round(cc, 1)
    if cc < MIN_COMPUTE_CAPABILITY:
        raise DeviceError(f"Compute capability {cc} is below brian2cuda's minimum {MIN_COMPUTE_CAPABILITY}")
    return cc


def _cc_str(cc: float | None) -> str:
    return "?" if cc is None else f"{cc:.1f}"


def _sm(cc: float) -> str:
    major, minor = divmod(round(cc * 10), 10)
    return f"sm_{major}{minor}"


# ---- toolkit ---------------------------------------------------------------------------------------------------
def find_nvcc() -> str | None:
    """Path of nvcc: ``$CUDA_PATH/bin``, ``$CUDA_HOME/bin``, ``PATH``, then ``/usr/local/cuda/bin``."""
    for var in ("CUDA_PATH", "CUDA_HOME"):
        root = os.environ.get(var)
        if root and os.access(Path(root) / "bin" / "nvcc", os.X_OK):
            return str(Path(root) / "bin" / "nvcc")
    found = shutil.which("nvcc")
    if found:
        return found
    return str(DEFAULT_NVCC) if os.access(DEFAULT_NVCC, os.X_OK) else None


def _run(cmd: list[str], timeout: float = 30) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout + done.stderr if done.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def _toolkit(nvcc: str) -> dict:
    """Version, root, include/library folders and target architectures of one nvcc."""
    info = {"nvcc": nvcc, "version": None, "root": None, "include_dirs": [], "library_dirs": [], "archs": None}
    out = _run([nvcc, "--version"])
    m = re.search(r"release (\d+)\.(\d+)", out or "")
    if m:
        info["version"] = f"{m[1]}.{m[2]}"
    # the dry run prints nvcc's own setup: the real toolkit behind wrapper scripts, its -I and -L folders
    out = _run([nvcc, "-dryrun", "-c", "decolle_probe.cu"]) or ""
    for line in out.splitlines():
        line = line.removeprefix("#$ ").strip()
        if line.startswith("TOP="):
            info["root"] = str(Path(line[4:]).resolve())
        elif line.startswith(("INCLUDES=", "SYSTEM_INCLUDES=")):
            info["include_dirs"] += [p for p in re.findall(r'"-I([^"]+)"', line)]
        elif line.startswith("LIBRARIES="):
            info["library_dirs"] += [p for p in re.findall(r'"-L([^"]+)"', line) if not p.endswith("stubs")]
    out = _run([nvcc, "--list-gpu-arch"])
    if out:
        info["archs"] = sorted({int(a[:-1]) + int(a[-1]) / 10 for a in re.findall(r"compute_(\d+)", out)})
    return info


def _nvidia_wheel_dirs() -> list[Path]:
    spec = importlib.util.find_spec("nvidia")
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []


def find_curand(nvcc: str | None = None) -> dict | None:
    """Where cuRAND's header and library are: the toolkit's own folders, else an ``nvidia-curand`` wheel.

    Returns
    -------
    dict or None
        ``{"source": "toolkit" | "wheel", "include": folder, "lib": folder, "library": file}``.
    """
    nvcc = nvcc or find_nvcc()
    tk = _toolkit(nvcc) if nvcc else {"include_dirs": [], "library_dirs": [], "version": None}
    inc = next((d for d in tk["include_dirs"] if (Path(d) / "curand.h").is_file()), None)
    lib = next((d for d in tk["library_dirs"] if (Path(d) / "libcurand.so").exists()), None)
    if inc and lib:
        return {"source": "toolkit", "include": str(Path(inc).resolve()), "lib": str(Path(lib).resolve()),
                "library": str(Path(lib).resolve() / "libcurand.so")}
    # wheel layouts: nvidia-curand (CUDA 13) -> nvidia/cu13/, nvidia-curand-cu12/cu11 -> nvidia/curand/.
    # Only the toolkit's CUDA major fits: the wheel's libcurand needs that major's libcudart.
    major = (tk["version"] or "").split(".")[0]
    if not major.isdigit():
        subdirs = ["cu13", "curand"]
    else:
        subdirs = [f"cu{major}"] + (["curand"] if int(major) <= 12 else [])
    for base in _nvidia_wheel_dirs():
        for sub in subdirs:
            root = base / sub
            libs = sorted((root / "lib").glob("libcurand.so*"))
            if (root / "include" / "curand.h").is_file() and libs:
                return {"source": "wheel", "include": str((root / "include").resolve()),
                        "lib": str((root / "lib").resolve()), "library": str(libs[0].resolve()),
                        "wheel_dir": sub}
    return None


# ---- GPUs ------------------------------------------------------------------------------------------------------
def _driver_gpus() -> dict | None:
    """GPUs through the CUDA driver library (respects CUDA_VISIBLE_DEVICES); None without a driver."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    cuda.cuDriverGetVersion(ctypes.byref(version))
    driver = f"{version.value // 1000}.{version.value % 1000 // 10}" if version.value else None
    rc = cuda.cuInit(0)
    if rc != 0:  # 100: no device; 35: driver too old; others: broken setup
        return {"source": "driver", "driver_cuda": driver, "gpus": [], "error": f"cuInit returned {rc}"}
    count = ctypes.c_int(0)
    cuda.cuDeviceGetCount(ctypes.byref(count))
    gpus = []
    for i in range(count.value):
        dev, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        cuda.cuDeviceGet(ctypes.byref(dev), i)
        name = ctypes.create_string_buffer(256)
        cuda.cuDeviceGetName(name, 256, dev)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # ... _MINOR
        gpus.append({"index": i, "name": name.value.decode(errors="replace"),
                     "compute_capability": major.value + minor.value / 10})
    return {"source": "driver", "driver_cuda": driver, "gpus": gpus}


def _smi_gpus() -> dict | None:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    out = _run([smi, "--query-gpu=index,name,compute_cap", "--format=csv,noheader"])
    if out is None:
        return {"source": "nvidia-smi", "driver_cuda": None, "gpus": [], "error": "nvidia-smi failed"}
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            try:
                cc = float(parts[2])
            except ValueError:
                cc = None
            gpus.append({"index": int(parts[0]), "name": parts[1], "compute_capability": cc})
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and all(v.strip().isdigit() for v in visible.split(",") if v.strip()):
        by_index = {g["index"]: g for g in gpus}
        picked = [by_index[int(v)] for v in visible.split(",") if v.strip() and int(v) in by_index]
        gpus = [dict(g, index=i) for i, g in enumerate(picked)]  # the runtime renumbers visible GPUs from 0
    header = _run([smi]) or ""
    m = re.search(r"CUDA Version:\s*(\d+\.\d+)", header)
    return {"source": "nvidia-smi", "driver_cuda": m[1] if m else None, "gpus": gpus}


@functools.lru_cache(maxsize=1)
def find_gpus() -> dict:
    """The GPUs this process can use (cached: call ``find_gpus.cache_clear()`` to look again).

    Returns
    -------
    dict
        ``{"source": "driver" | "nvidia-smi" | None, "driver_cuda": "13.0" | None,
        "gpus": [{"index", "name", "compute_capability"}, ...]}``.
    """
    found = _driver_gpus()
    if found is None or (not found["gpus"] and "error" in found):
        smi = _smi_gpus()
        if smi is not None and (smi["gpus"] or found is None):
            if found is not None and smi["driver_cuda"] is None:
                smi["driver_cuda"] = found["driver_cuda"]
            found = smi
    return found or {"source": None, "driver_cuda": None, "gpus": []}


def _best_gpu(gpus: list[dict]) -> dict | None:
    """Highest compute capability, lowest index (as brian2cuda chooses)."""
    usable = [g for g in gpus if g["compute_capability"] is not None]
    return max(usable, key=lambda g: (g["compute_capability"], -g["index"])) if usable else None


def _brian2cuda_version() -> tuple[str | None, str | None]:
    """(version, error) without importing brian2cuda (importing it registers a device and preferences)."""
    if importlib.util.find_spec("brian2cuda") is None:
        return None, "not installed"
    try:
        return importlib.metadata.version("brian2cuda"), None
    except importlib.metadata.PackageNotFoundError:
        return "unknown", None


def _target_cc(compute_capability) -> tuple[float | None, str | None]:
    if compute_capability is not None:
        return parse_compute_capability(compute_capability), "argument"
    env = os.environ.get(ENV_CC, "").strip()
    if env:
        try:
            return parse_compute_capability(env), ENV_CC
        except DeviceError as err:
            raise DeviceError(f"{ENV_CC}={env!r}: {err}") from None
    return None, None


# ---- status ----------------------------------------------------------------------------------------------------
def cuda_status(compute_capability: float | str | None = None) -> dict:
    """Everything the CUDA device depends on, found without compiling or importing brian2cuda.

    Parameters
    ----------
    compute_capability : float or str, optional
        An explicit target (else ``$DECOLLE_CUDA_CC``, else the best GPU's).

    Returns
    -------
    dict
        nvcc (path), nvcc_version, cuda_toolkit (root folder), nvcc_archs (compute capabilities nvcc can
        target), gpus (list of index/name/compute_capability), gpu_source, driver_cuda (CUDA version of the
        driver), compute_capability and compute_capability_source (the build target and where it came
        from), brian2cuda (version or None), brian2cuda_error, curand (see :func:`find_curand`), errors
        (what is wrong, as messages).
    """
    errors = []
    nvcc = find_nvcc()
    tk = _toolkit(nvcc) if nvcc else None
    b2c_version, b2c_error = _brian2cuda_version()
    found = find_gpus()
    try:
        cc, cc_source = _target_cc(compute_capability)
    except DeviceError as err:
        cc, cc_source = None, None
        errors.append(str(err))
    best = _best_gpu(found["gpus"])
    if cc is None and best is not None:
        cc, cc_source = best["compute_capability"], f"GPU {best['index']} ({best['name']})"
    return {
        "nvcc": nvcc,
        "nvcc_version": tk["version"] if tk else None,
        "cuda_toolkit": tk["root"] if tk else None,
        "nvcc_archs": tk["archs"] if tk else None,
        "gpus": found["gpus"],
        "gpu_source": found["source"],
        "gpu_error": found.get("error"),
        "driver_cuda": found["driver_cuda"],
        "compute_capability": cc,
        "compute_capability_source": cc_source,
        "brian2cuda": b2c_version,
        "brian2cuda_error": b2c_error,
        "curand": find_curand(nvcc) if nvcc else None,
        "errors": errors,
    }


def cuda_summary_line(status: dict | None = None) -> str:
    """One line saying what the CUDA device can do here and what to do about it.

    Examples
    --------
    ``CUDA: nvcc 13.0 at /usr/local/bin/nvcc, brian2cuda 1.0b1, cuRAND from wheel, no GPU found (building
    only; set DECOLLE_CUDA_CC=9.0 to compile for a target)``
    """
    s = status or cuda_status()
    if not s["nvcc"]:
        parts = ["CUDA: no nvcc found (install the CUDA toolkit or set CUDA_PATH)"]
    else:
        parts = [f"CUDA: nvcc {s['nvcc_version'] or '?'} at {s['nvcc']}"]
    parts.append(f"brian2cuda {s['brian2cuda']}" if s["brian2cuda"] else f"brian2cuda missing ({INSTALL_HINT})")
    if s["nvcc"]:
        parts.append(f"cuRAND from {s['curand']['source']}" if s["curand"]
                     else "cuRAND missing (pip install nvidia-curand)")
    if s["gpus"]:
        gpus = "; ".join(f"GPU {g['index']} {g['name']} (cc {_cc_str(g['compute_capability'])})" for g in s["gpus"])
        driver = f", driver CUDA {s['driver_cuda']}" if s["driver_cuda"] else ""
        parts.append(gpus + driver)
        if s["compute_capability_source"] in ("argument", ENV_CC):
            parts.append(f"target cc {_cc_str(s['compute_capability'])} from {s['compute_capability_source']}")
    elif s["compute_capability"] is not None:
        parts.append(f"no GPU found (building only, for cc {_cc_str(s['compute_capability'])} from "
                     f"{s['compute_capability_source']})")
    else:
        parts.append(f"no GPU found (building only; set {ENV_CC}=9.0 to compile for a target)")
    parts += s["errors"]
    return ", ".join(parts)


def check_cuda_available(require_gpu: bool, compute_capability: float | str | None = None,
                         require_compiler: bool = True) -> dict:
    """Raise a clear :class:`DeviceError` if the CUDA device cannot build (or run) here; else the status.

    Parameters
    ----------
    require_gpu : bool
        Also require a GPU that can run code compiled for the target compute capability, and a driver new
        enough for the toolkit.
    compute_capability : float or str, optional
        The build target (else ``$DECOLLE_CUDA_CC``, else the best GPU's).
    require_compiler : bool
        Require nvcc and cuRAND (building). A compiled network runs without them.

    Returns
    -------
    dict
        :func:`cuda_status`, with ``gpu_id``: the GPU the binary will use (0 without a GPU).
    """
    s = cuda_status(compute_capability)
    if s["errors"]:
        raise DeviceError(s["errors"][0])
    if s["brian2cuda"] is None:
        raise DeviceError(f"The cuda_standalone device needs brian2cuda, which is not installed: {INSTALL_HINT}")
    if require_compiler:
        if not s["nvcc"]:
            raise DeviceError("The cuda_standalone device needs nvcc (the CUDA toolkit) and none was found on PATH, "
                              "in $CUDA_PATH/bin or in /usr/local/cuda/bin: install the CUDA toolkit (or the "
                              "nvidia-cuda-nvcc wheel) and put its bin folder on PATH")
        if not s["curand"]:
            wheel = "nvidia-curand-cu12" if (s["nvcc_version"] or "").startswith("12.") else "nvidia-curand"
            raise DeviceError(f"brian2cuda links cuRAND, but neither the CUDA toolkit at {s['cuda_toolkit']} nor an "
                              f"nvidia-curand wheel for CUDA {s['nvcc_version']} has it: pip install {wheel} "
                              f"(CUDA 13: nvidia-curand, CUDA 12: nvidia-curand-cu12)")
    cc = s["compute_capability"]
    if cc is None:
        if require_gpu:
            raise DeviceError(f"No CUDA GPU found ({_gpu_reason(s)}): the cuda_standalone device needs a GPU to run. "
                              f"Use device='cpp_standalone' here, or build only, for a target: {ENV_CC}=9.0")
        raise DeviceError(f"No CUDA GPU found ({_gpu_reason(s)}), so there is no compute capability to compile for. "
                          f"To build without a GPU give a target: {ENV_CC}=9.0 (H100/H200; 8.0 A100, 8.6/8.9 "
                          f"RTX 30xx/40xx) or activate_cuda(..., compute_capability=9.0)")
    if require_compiler and s["nvcc_archs"] and cc not in s["nvcc_archs"]:
        raise DeviceError(f"nvcc {s['nvcc_version']} cannot compile for compute capability {_cc_str(cc)} "
                          f"(from {s['compute_capability_source']}); it supports "
                          f"{', '.join(_cc_str(a) for a in s['nvcc_archs'])}")
    best = _best_gpu(s["gpus"])
    s["gpu_id"] = best["index"] if best else 0
    if require_gpu:
        _check_gpu(s["gpus"], s["driver_cuda"], s["gpu_id"], cc, s["nvcc_version"], _gpu_reason(s))
    elif best is not None and best["compute_capability"] < cc:
        warnings.warn(f"Compiling for compute capability {_cc_str(cc)}, but this machine's best GPU "
                      f"({best['name']}) has {_cc_str(best['compute_capability'])}: the binary will not run here",
                      stacklevel=2)
    return s


def _gpu_reason(s: dict) -> str:
    if s["gpu_source"] is None:
        return "no CUDA driver (libcuda.so.1) and no nvidia-smi"
    if s.get("gpu_error"):
        return f"{s['gpu_source']}: {s['gpu_error']}"
    return f"the {s['gpu_source']} lists no GPU"


def _check_gpu(gpus: list[dict], driver_cuda: str | None, gpu_id: int, cc: float, built_with: str | None,
               reason: str) -> None:
    """Raise DeviceError unless GPU ``gpu_id`` exists and runs code for ``cc`` built by nvcc ``built_with``."""
    if not gpus:
        raise DeviceError(f"No CUDA GPU found ({reason}): a cuda_standalone network can be built here but needs "
                          f"a GPU to run. Run it on a machine with an NVIDIA GPU (compute capability >= "
                          f"{_cc_str(cc)}), or use device='cpp_standalone'")
    gpu = next((g for g in gpus if g["index"] == gpu_id), None)
    if gpu is None:
        raise DeviceError(f"The network was compiled to use GPU {gpu_id}, but only GPUs "
                          f"{[g['index'] for g in gpus]} are visible (CUDA_VISIBLE_DEVICES?): rebuild it here")
    # sm_XY code (with its PTX) runs on GPUs of compute capability >= X.Y, not on older ones
    if gpu["compute_capability"] is not None and gpu["compute_capability"] < cc:
        raise DeviceError(f"Compute capability mismatch: the network was compiled for {_cc_str(cc)} ({_sm(cc)}) but "
                          f"GPU {gpu_id} ({gpu['name']}) has {_cc_str(gpu['compute_capability'])}. Rebuild with "
                          f"{ENV_CC}={_cc_str(gpu['compute_capability'])} (or unset {ENV_CC} to use the GPU's own)")
    if driver_cuda and built_with:
        have = tuple(int(x) for x in driver_cuda.split("."))
        need = tuple(int(x) for x in built_with.split("."))
        if have[0] < need[0]:
            raise DeviceError(f"The GPU driver supports CUDA {driver_cuda}, but the network was compiled with nvcc "
                              f"{built_with}: update the NVIDIA driver, or build with a CUDA {have[0]} toolkit")


# ---- activation ------------------------------------------------------------------------------------------------
def activate_cuda(build_dir: str | Path, compute_capability: float | str | None = None,
                  detect_gpus: bool | None = None) -> dict:
    """Make brian2cuda's ``cuda_standalone`` the device, set up for this toolkit, building into ``build_dir``.

    Calls ``set_device("cuda_standalone", directory=build_dir, build_on_run=False)`` after checking what a
    build needs (raises :class:`DeviceError` before any code is generated) and setting the preferences.

    Parameters
    ----------
    build_dir : path
        The standalone project folder.
    compute_capability : float or str, optional
        Target compute capability (e.g. 9.0). Default: ``$DECOLLE_CUDA_CC``, else the best visible GPU's.
        With a target, no GPU is needed to build.
    detect_gpus : bool, optional
        True: let brian2cuda detect the GPU itself (it runs ``nvidia-smi``; a GPU is needed to build).
        False: never look for one (needs a target compute capability). None (default): use the target if
        one is given, else the GPU found through the CUDA driver or ``nvidia-smi``.

    Returns
    -------
    dict
        The status (see :func:`cuda_status`) with the ``compute_capability`` and ``gpu_id`` compiled in.
    """
    build_dir = Path(build_dir)
    if detect_gpus is False and compute_capability is None and not os.environ.get(ENV_CC, "").strip():
        raise DeviceError(f"detect_gpus=False needs a target compute capability: pass compute_capability=9.0 "
                          f"(for example) or set {ENV_CC}")
    status = check_cuda_available(require_gpu=bool(detect_gpus), compute_capability=compute_capability)

    import brian2cuda  # noqa: F401 - registers the cuda_standalone device and its preferences
    from brian2 import get_device, prefs, set_device
    from brian2cuda.utils import gputools

    # brian2cuda caches the toolkit and the GPU choice per process: forget an earlier activation's
    gputools.reset_cuda_installation()
    gputools.reset_gpu_selection()
    backend = prefs.devices.cuda_standalone.cuda_backend
    backend.cuda_path = status["cuda_toolkit"]
    backend.cuda_runtime_version = float(status["nvcc_version"])
    if detect_gpus:
        backend.detect_gpus = True
        backend.gpu_id = None
        backend.compute_capability = (parse_compute_capability(compute_capability)
                                      if compute_capability is not None else None)
    else:
        # our own choice (explicit target, or the GPU found through the driver): no nvidia-smi at build time
        backend.detect_gpus = False
        backend.gpu_id = int(status["gpu_id"])
        backend.compute_capability = float(status["compute_capability"])
    curand = status["curand"]
    nvcc_flags = [*NVCC_DEFAULT_FLAGS, CXX_STD]
    if curand["source"] == "wheel":
        nvcc_flags.append(f"-I{curand['include']}")
    # a fresh list: brian2cuda's generate_makefile edits this preference in place
    backend.extra_compile_args_nvcc = list(nvcc_flags)
    # host flags reach gcc through -Xcompiler after nvcc's own -std: the c++11 there must go
    gcc_flags = [f for f in prefs.codegen.cpp.extra_compile_args_gcc if not f.startswith("-std=")]
    prefs.codegen.cpp.extra_compile_args_gcc = [*gcc_flags, CXX_STD]

    _quiet_brian2cuda()
    build_dir.mkdir(parents=True, exist_ok=True)
    set_device("cuda_standalone", directory=str(build_dir), build_on_run=False)
    if curand["source"] == "wheel":
        dev = get_device()
        link_dirs = [_curand_link_dir(build_dir, curand)]
        # the wheel's libcurand needs libcudart.so.<major>: let the binary find the toolkit's (as RPATH, not
        # RUNPATH: only an RPATH of the executable also serves the libraries it loads)
        run_dirs = [curand["lib"], *_cudart_dirs(status["nvcc"])]
        for attr, folders in (("library_dirs", link_dirs), ("runtime_library_dirs", run_dirs),
                              ("extra_link_args", ["-Wl,--disable-new-dtags"])):
            for folder in folders:
                if folder not in getattr(dev, attr):
                    getattr(dev, attr).append(folder)
    info = {"compute_capability": float(status["compute_capability"]), "gpu_id": int(status["gpu_id"]),
            "nvcc": status["nvcc"], "nvcc_version": status["nvcc_version"], "nvcc_flags": nvcc_flags,
            "host_flags": list(prefs.codegen.cpp.extra_compile_args_gcc), "curand": curand,
            "detect_gpus": bool(detect_gpus), "brian2cuda": status["brian2cuda"]}
    _forget_stale_objects(build_dir, info)
    (build_dir / BUILD_INFO).write_text(json.dumps(info, indent=1))
    return dict(status, **info)


def _console_filter(record: logging.LogRecord) -> bool:
    return not (record.name.startswith("brian2.brian2cuda") and record.levelno < logging.WARNING)


def _quiet_brian2cuda() -> None:
    """Keep brian2cuda's INFO lines (about 35 per build) off the console; Brian's log file still has them."""
    from brian2.utils.logger import BrianLogger

    handler = getattr(BrianLogger, "console_handler", None)
    if handler is not None and _console_filter not in handler.filters:
        handler.addFilter(_console_filter)


def _forget_stale_objects(build_dir: Path, info: dict) -> None:
    """Delete compiled objects made for another target or toolkit: make only compares file times."""
    path = build_dir / BUILD_INFO
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    keys = ("compute_capability", "gpu_id", "nvcc", "nvcc_version", "nvcc_flags", "host_flags", "curand")
    if any(old.get(k) != info[k] for k in keys):
        for obj in [*build_dir.rglob("*.o"), build_dir / "main"]:
            obj.unlink(missing_ok=True)


def _cudart_dirs(nvcc: str) -> list[str]:
    tk = _toolkit(nvcc)
    return [str(Path(d).resolve()) for d in tk["library_dirs"] if any(Path(d).glob("libcudart.so.*"))]


def _curand_link_dir(build_dir: Path, curand: dict) -> str:
    """A folder with ``libcurand.so`` for the linker's ``-lcurand`` (the wheel only has ``libcurand.so.10``)."""
    lib = Path(curand["lib"])
    if (lib / "libcurand.so").exists():
        return str(lib)
    link_dir = build_dir / "curand_link"
    link_dir.mkdir(exist_ok=True)
    link = link_dir / "libcurand.so"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(curand["library"])
    return str(link_dir.resolve())


def check_clocks(objects) -> None:
    """Raise DeviceError unless every Brian object runs on ``defaultclock`` (brian2cuda needs one clock)."""
    from brian2 import defaultclock

    # defaultclock is a proxy: compare the clocks by name
    others = sorted(obj.name for obj in objects if getattr(obj, "clock", defaultclock).name != defaultclock.name)
    if others:
        raise DeviceError(f"cuda_standalone needs every object on defaultclock; these are not: {others}")


# ---- running ---------------------------------------------------------------------------------------------------
def compiled_target(build_dir: str | Path) -> dict:
    """What the binary in ``build_dir`` was compiled for, read from the generated project itself.

    Returns
    -------
    dict
        ``compute_capability`` (from the makefile's ``-arch=sm_XY``), ``gpu_id`` (from ``cudaSetDevice``
        in main.cu), ``nvcc_version`` (from :data:`BUILD_INFO`), ``binary`` (path or None).
    """
    build_dir = Path(build_dir)
    out = {"compute_capability": None, "gpu_id": 0, "nvcc_version": None, "binary": None}
    if (build_dir / BUILD_INFO).is_file():
        info = json.loads((build_dir / BUILD_INFO).read_text())
        out.update({k: info.get(k, out[k]) for k in ("compute_capability", "gpu_id", "nvcc_version")})
    makefile = build_dir / "makefile"
    if makefile.is_file():
        m = re.search(r"-arch=sm_(\d+)", makefile.read_text())
        if m:
            out["compute_capability"] = int(m[1][:-1]) + int(m[1][-1]) / 10
    main = build_dir / "main.cu"
    if main.is_file():
        m = re.search(r"cudaSetDevice\(\s*(\d+)\s*\)", main.read_text())
        if m:
            out["gpu_id"] = int(m[1])
    if (build_dir / "main").is_file():
        out["binary"] = str(build_dir / "main")
    return out


def check_gpu_visible() -> None:
    """Raise :class:`DeviceError` when no CUDA GPU is visible: what a run needs, before anything is built or written
    (:func:`before_run_check` checks a compiled network against the GPU found)."""
    found = find_gpus()
    s = {"gpu_source": found["source"], "gpu_error": found.get("error")}
    if not found["gpus"]:
        _check_gpu([], found["driver_cuda"], 0, MIN_COMPUTE_CAPABILITY, None, _gpu_reason(s))


def before_run_check(build_dir: str | Path) -> None:
    """Raise a clear :class:`DeviceError` if the compiled CUDA network in ``build_dir`` cannot run here.

    Call it before ``device.run``: without it a missing GPU shows up as a failed run of the binary with a
    CUDA runtime error in its output. Checks the binary exists, a GPU is visible, its compute capability is
    at least the compiled one and the driver is new enough for the toolkit. A passing build folder is
    remembered, so calling it for every chunk costs nothing after the first.
    """
    build_dir = Path(build_dir)
    target = compiled_target(build_dir)
    if target["binary"] is None:
        raise DeviceError(f"No compiled CUDA binary in {build_dir}: the build did not finish; build the network again")
    key = (str(build_dir.resolve()), os.path.getmtime(target["binary"]))
    if key in _checked_builds:
        return
    found = find_gpus()
    s = {"gpu_source": found["source"], "gpu_error": found.get("error")}
    cc = target["compute_capability"] or MIN_COMPUTE_CAPABILITY
    _check_gpu(found["gpus"], found["driver_cuda"], target["gpu_id"], cc, target["nvcc_version"], _gpu_reason(s))
    _checked_builds.add(key)
