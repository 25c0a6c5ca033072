"""Two serial costs of a fresh Brian C++ standalone build, cut without changing what is compiled or how.

**make.deps.** Brian's makefile regenerates its header dependencies ``make.deps`` whenever a source changed,
with one ``$(CXX) $(CXXFLAGS) -MM $(SRCS)``: every source preprocessed in one serial process, about 0.1 s
each (14 s for the 141 sources of the DvsGesture network, on every fresh build, before the parallel compile
starts). The rules it writes are named after the sources' base names (``x_codeobject.o:``, not
``code_objects/x_codeobject.o``), so only those of the sources in the project's top folder (``main.cpp``,
``objects.cpp``, ...) name a real target; the others never apply. :func:`write_make_deps` writes the same
rules for the top-folder sources only (the same ``-MM`` command on those few files), which is what make uses
of the full file, so make rebuilds exactly what it rebuilt before.

**objects.cpp.** The project's ``objects.cpp`` only allocates, loads and writes the arrays (once per run): a
long file (7,000 lines for DvsGesture) that took 10 s at -O3, the longest single compile, for no per-step
code. :data:`PER_FILE_FLAGS` compiles it at -O1 (4.4 s); every code object keeps the project's flags.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from brian2 import prefs

#: make.deps, Brian's generated header dependencies
DEPS = "make.deps"
#: extra flags of single objects (the last -O wins): run-once array code, not per-step code
PER_FILE_FLAGS = {"objects.o": "-O1"}


def per_file_make_args() -> list[str]:
    """``make`` arguments giving the objects of :data:`PER_FILE_FLAGS` their extra flags."""
    return [shlex.quote(f"--eval={target}: OPTIMISATIONS += {flags}") for target, flags in PER_FILE_FLAGS.items()]


def _variable(makefile: Path, name: str) -> list[str]:
    """The words of a ``NAME = ...`` line of Brian's makefile (``SRCS``, ``H_SRCS``)."""
    for line in makefile.read_text().splitlines():
        match = re.match(rf"{name}\s*=(.*)", line)
        if match:
            return match.group(1).split()
    return []


def write_make_deps(directory: str | Path, compiler: str) -> bool:
    """Write ``make.deps`` with the rules of the top-folder sources only, if make would remake it.

    Call after Brian wrote the project and before ``make`` runs (the file must end up newer than every
    source and header, as make's own rule leaves it). Returns whether it was written; anything unexpected
    leaves Brian's own rule to write it.
    """
    folder = Path(directory)
    makefile = folder / "makefile"
    if not makefile.is_file():
        return False
    sources = _variable(makefile, "SRCS")
    inputs = [folder / name for name in sources + _variable(makefile, "H_SRCS")]
    deps = folder / DEPS
    if deps.is_file() and all(path.is_file() and path.stat().st_mtime <= deps.stat().st_mtime for path in inputs):
        return False  # up to date: make would not remake it either
    top = [source for source in sources if "/" not in source]
    # DEPS empty: make must not remake make.deps to print the flags
    printed = subprocess.run([prefs.devices.cpp_standalone.make_cmd_unix, "-s", "--no-print-directory", "DEPS=",
                              "--eval", "decolle-cxxflags: ; @echo $(CXXFLAGS)", "decolle-cxxflags"],
                             cwd=folder, capture_output=True, text=True, check=False)
    if not top or printed.returncode != 0:
        return False
    command = f"{compiler} {printed.stdout.strip()} -MM {' '.join(shlex.quote(s) for s in top)}"
    rules = subprocess.run(command, shell=True, cwd=folder, capture_output=True, text=True, check=False)
    if rules.returncode != 0:
        return False
    deps.write_text(rules.stdout)
    return True
