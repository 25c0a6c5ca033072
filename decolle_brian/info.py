"""``decolle-brian info``: versions, devices, compilers and data found, one line each."""

from __future__ import annotations

import os
import shutil
import subprocess

from decolle_brian.store import package_versions


def _compiler_line() -> str:
    """The compiler C++ standalone builds would use: ``$CXX`` when set (Brian's makefile compiles with it), else
    make's default ``g++`` (as :meth:`CppStandaloneBackend.check_toolchain` checks)."""
    chosen = os.environ.get("CXX", "").split()
    name, origin = (chosen[0], "from CXX") if chosen else ("g++", "make's default")
    cxx = shutil.which(name)
    if not cxx:
        return (f"C++ compiler: {name} ({origin}) not found: cpp_standalone needs one (install g++ or set CXX); "
                "runtime works without")
    first = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout.splitlines()
    return f"C++ compiler: {first[0] if first else cxx} ({cxx}, {origin})"


def _cuda_line() -> str:
    try:
        from decolle_brian.cuda import cuda_summary_line  # noqa: PLC0415
    except ImportError as exc:
        return f"CUDA: support module unavailable ({exc})"
    return cuda_summary_line()


def _data_lines() -> list[str]:
    from decolle_brian.data import DATASETS, default_root  # noqa: PLC0415

    lines = ["data: digits (embedded, scikit-learn): always available"]
    for name in (name for name in DATASETS if name != "digits"):
        try:
            root = default_root(name)
        except Exception as exc:  # noqa: BLE001 - report, never fail, in info
            root, reason = None, str(exc).splitlines()[0]
        else:
            reason = "not found (see its loader's message for where to put the files)"
        lines.append(f"data: {name}: {root}" if root else f"data: {name}: {reason}")
    return lines


def info_lines() -> list[str]:
    """What ``decolle-brian info`` prints: versions, devices, compilers, CUDA and the data found, one item a line."""
    versions = package_versions()
    lines = ["versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())]
    lines.append("devices: runtime (Brian2 runtime, numpy/cython), cpp_standalone, cuda_standalone (extra [cuda])")
    lines.append(_compiler_line())
    lines.append(_cuda_line())
    lines += _data_lines()
    return lines
