"""The C++ standalone binary writes only the arrays that Python reads back after a run.

At the end of every run Brian's generated ``_write_arrays()`` writes every array of the project into a file
of its own: for the dense 2048-500-500 event benchmark network 165 files and 22 MB per run, 10 MB of them
synapse indices nobody reads; at batch 72 (exact) 183 files and 76 MB; for the DvsGesture conv network 315
files and 69 MB. Written only as read back: 33 files and 11 MB, 35 and 34 MB, 60 and 28.5 MB, and the
binary's system CPU per run (creating, writing and, before the next run, deleting the files) 0.03-0.06 ->
0.02 s and 0.16 -> 0.06 s (docs/batch.md).

:class:`ReadBackDevice` is Brian's C++ standalone device with one change to the generated ``objects.cpp``:
Brian's own ``_write_arrays`` (every array, unchanged) is renamed, Brian's template renders a second
``_write_arrays`` for the arrays read back only (:meth:`ReadBackDevice.select`), and a new ``_write_arrays``
calls the second, or the first when the binary runs with ``DECOLLE_WRITE_ALL_RESULTS=1`` in its environment
(:attr:`~decolle_brian.devices.Simulator.write_all_results`: debugging, no rebuild). Both functions come
from Brian's template, rendered by Brian's ``generate_objects_source``; only the function's name and the
arrays it is given differ, so the files written are byte for byte Brian's.

The arrays read back are the ones the package declares
(:meth:`~decolle_brian.network.builder.BrianNetwork.read_back`: parameters, monitors, synapse counts) and the
ones Brian itself reads after every run: its check of every group's differential-equation variables for NaN or
very large values (``Group._check_for_invalid_states``, called by ``device.run``). Reading any other array
after a run raises a :class:`DeviceError` that names it and the fix, instead of Brian's reading a missing or
stale file.

Why this design: a subclass owns the two places that need Brian's internals (rendering, reading) and is
chosen by name like any Brian device, so brian2cuda's device (a subclass of Brian's, not of this one) keeps
writing every array; no template text is copied; renaming a function and splicing one function in, both
checked, is the least the generated file can be changed by (filtering single arrays out of the rendered
text would depend on the shape of every block of Brian's template).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from brian2.core.variables import ArrayVariable, Subexpression
from brian2.devices.cpp_standalone.device import CPPStandaloneDevice
from brian2.devices.device import all_devices
from brian2.equations.equations import Equations
from brian2.groups.group import Group

from decolle_brian.backends.served import served_main
from decolle_brian.errors import DeviceError

#: the name of :class:`ReadBackDevice` in Brian's device registry (``set_device(DEVICE_NAME)``)
DEVICE_NAME = "decolle_cpp_standalone"
#: environment variable of the binary: "1" writes every array (Brian's ``_write_arrays``), else the chosen ones
WRITE_ALL_VARIABLE = "DECOLLE_WRITE_ALL_RESULTS"
#: what a run writes into its results folder besides the arrays (Brian's binary and ``device.run``)
RUN_FILES = ("last_run_info.txt", "random_generator_state", "profiling_info.txt", "stdout.txt")

_EVERY = "_decolle_write_every_array"
_CHOSEN = "_decolle_write_read_back"
_DISPATCH = f"""

void _write_arrays()
{{
    // decolle_brian (backends/read_back.py): only the arrays Python reads back, unless {WRITE_ALL_VARIABLE}=1
    const char* every = std::getenv("{WRITE_ALL_VARIABLE}");
    if (every != nullptr && std::string(every) == "1")
        {_EVERY}();
    else
        {_CHOSEN}();
}}"""


#: statements of Brian's objects.cpp that report a file the binary could not read or write, and go on
_FILE_ERRORS = re.compile(
    r'std::(?:cerr|cout) (<< "(?:Error reading|Could not read|Cannot set unknown variable|Error opening static array|'
    r'Error writing output file)[^;]*);')
_CLOSE = re.compile(r"(\s*)(outfile_\w+)\.close\(\);")


def fatal_file_errors(source: str) -> str:
    """Brian's ``objects.cpp`` with every file error fatal: the message on stdout, then ``exit(1)``.

    Brian's binary reports a run-argument file it cannot read (missing, or of the wrong size), an unknown variable,
    a static array it cannot open or a results file it cannot open, and goes on: the variable keeps its initial
    value and the run exits 0, so a missing parameter file trains from the initial weights without a word; and it
    never checks that a results file was written whole (a full disk truncates it). Here each such report stops
    the binary (the backend raises its message, :class:`~decolle_brian.errors.DeviceError`), and so does a results
    file whose writing failed. ValueError if Brian's file does not have the statements this expects.
    """
    patched, reports = _FILE_ERRORS.subn(lambda m: f"{{ std::cout {m.group(1)}; std::exit(1); }}", source)
    patched, closes = _CLOSE.subn(
        lambda m: (f"{m.group(1)}{m.group(2)}.close();{m.group(1)}if ({m.group(2)}.fail()) {{ std::cout << "
                   f"\"Error writing output file {m.group(2).removeprefix('outfile_')} (disk or memory full?)\" << "
                   "std::endl; std::exit(1); }"), patched)
    if reports < 4 or closes < 1:
        raise ValueError(f"Brian's objects.cpp has {reports} file-error reports and {closes} results files closed; "
                         "expected at least 4 and 1 (decolle_brian/backends/read_back.py, fatal_file_errors)")
    return patched


def function_span(source: str, name: str) -> tuple[int, int]:
    """Start and end of the one definition ``void name()`` in C++ ``source``, its body's braces matched.

    Braces inside string and character literals and comments do not count. Raises ValueError unless the
    definition is found exactly once and its braces close.
    """
    found = list(re.finditer(rf"^void {re.escape(name)}\(\)\s*\{{", source, flags=re.MULTILINE))
    if len(found) != 1:
        raise ValueError(f"Expected one definition of {name}() in Brian's objects.cpp, found {len(found)}")
    depth, position, end = 0, found[0].end() - 1, len(source)
    while position < end:
        char = source[position]
        if char in "\"'":  # a literal: skip to its closing quote
            position += 1
            while position < end and source[position] != char:
                position += 2 if source[position] == "\\" else 1
        elif source.startswith("//", position):
            position = source.find("\n", position)
            position = end if position < 0 else position
        elif source.startswith("/*", position):
            position = source.find("*/", position)
            position = end if position < 0 else position + 1
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return found[0].start(), position + 1
        position += 1
    raise ValueError(f"The body of {name}() in Brian's objects.cpp does not close")


def _renamed(function: str, name: str) -> str:
    """A ``void _write_arrays()`` definition under another name, local to objects.cpp."""
    return function.replace("void _write_arrays()", f"static void {name}()", 1)


class _Capture:
    """A writer that keeps what Brian's ``generate_objects_source`` writes instead of writing it."""

    contents = None

    def write(self, filename, contents):
        self.contents = contents


def checked_by_brian(device) -> set:
    """The arrays Brian's ``device.run`` reads after every run: the differential-equation variables of every group
    that owns an array of the device (``Group._check_for_invalid_states``, a warning on NaN or very large values)."""
    variables, owners = set(), {}
    for var in device.arrays:
        try:
            owners.setdefault(var.owner.name, var.owner)
        except ReferenceError:  # an owner gone (Brian's check skips it too)
            continue
    for owner in owners.values():
        equations = getattr(owner, "equations", None)
        if isinstance(owner, Group) and isinstance(equations, Equations):
            variables.update(owner.variables[name] for name in equations.diff_eq_names)
    return variables


class ReadBackDevice(CPPStandaloneDevice):
    """Brian's C++ standalone device whose binary writes only the arrays of :meth:`select` after a run."""

    def __init__(self):
        super().__init__()  # Brian's reinit() calls this too: a fresh device selects nothing (every array)
        #: the arrays the binary writes after a run (None: every array, Brian's behaviour)
        self.read_back: set | None = None
        #: the arrays written by the last run (None: every array)
        self.written: set | None = None
        #: result files of the last run moved elsewhere (:mod:`decolle_brian.backends.param_files`): variable -> file
        self.moved: dict = {}
        #: whether the last build's binary can be served (:func:`~decolle_brian.backends.served.served_main`)
        self.servable = False

    def select(self, pairs) -> None:
        """Write only the arrays of ``(owner, variable name)`` ``pairs`` and those Brian reads after every run.

        Call after the network's ``run`` was recorded (every array exists) and before ``build``; owners are Brian
        groups or monitors (a subgroup's variable is its parent's array).
        """
        chosen = set()
        for owner, name in pairs:
            var = owner.variables[name]
            if isinstance(var, Subexpression):  # evaluated in Python from other arrays: name those instead
                raise ValueError(f"'{owner.name}.{name}' is a subexpression: read back the variables it is made of")
            if isinstance(var, ArrayVariable):  # constants are known without a run
                chosen.add(var)
        self.read_back = chosen | checked_by_brian(self)

    def files_written(self) -> list[str] | None:
        """Names of the files a run writes into its results folder (None: every array's, not known here)."""
        if self.read_back is None:
            return None
        return sorted(self.get_array_filename(var) for var in self.read_back) + list(RUN_FILES)

    def run(self, directory=None, results_directory=None, with_output=True, run_args=None):
        """Brian's ``run``, remembering which arrays it wrote (every one with ``DECOLLE_WRITE_ALL_RESULTS=1``)."""
        every = self.read_back is None or self.run_environment_variables.get(WRITE_ALL_VARIABLE) == "1"
        self.written = None if every else self.read_back
        self.moved = {}
        super().run(directory, results_directory, with_output, run_args)

    def result_file(self, var) -> Path:
        """The file of ``var`` written by the last run (a :class:`DeviceError` naming it and the fix if none was)."""
        self._check_written(var)
        return Path(self.results_dir) / self.get_array_filename(var)

    def get_value(self, var, access_data=True):
        """Brian's ``get_value``; a :class:`DeviceError` naming ``var`` and the fix if the last run did not write it.

        A result file moved elsewhere after the run (:attr:`moved`) is read where it went."""
        moved = self.moved.get(var) if self.has_been_run else None
        if moved is not None:
            if not moved.is_file():
                raise DeviceError(f"'{var.owner.name}.{var.name}' of the last run was handed out as a parameter and "
                                  "freed since: read it from the outputs of the run (ChunkOutputs.params)")
            return np.fromfile(moved, dtype=var.dtype)
        self._check_written(var)
        return super().get_value(var, access_data)

    def _check_written(self, var) -> None:
        if self.has_been_run and self.written is not None and var not in self.written \
                and self.array_cache.get(var) is None:
            raise DeviceError(
                f"'{var.owner.name}.{var.name}' was not written by the compiled network's run: the binary writes only "
                "the arrays the package reads back (BrianNetwork.read_back). Record it with a monitor (a probe, "
                "Simulator(probes=...)), or set Simulator.write_all_results = True and run again to write every "
                "array (debugging, slower)")

    def generate_main_source(self, writer):
        """Brian's ``main.cpp``, servable as a fork server (:mod:`decolle_brian.backends.served`) where it has the
        lines that needs; unchanged otherwise (:attr:`servable` says which)."""
        main = _Capture()
        super().generate_main_source(main)
        served = served_main(main.contents)
        self.servable = served is not None
        writer.write("main.cpp", main.contents if served is None else served)

    def generate_objects_source(self, writer, arange_arrays, synapses, static_array_specs, networks, timed_arrays):
        """Brian's ``objects.cpp`` and ``objects.h``, with ``_write_arrays`` choosing between every array and those
        of :meth:`select` (the module docstring); Brian's files unchanged when nothing was selected."""
        if self.read_back is None:
            return super().generate_objects_source(writer, arange_arrays, synapses, static_array_specs, networks,
                                                   timed_arrays)
        every, chosen = _Capture(), _Capture()
        super().generate_objects_source(every, arange_arrays, synapses, static_array_specs, networks, timed_arrays)
        # the same template again, given the chosen arrays only (and no spike queues, which nothing reads): its
        # _write_arrays is the one kept; the rest of this rendering is discarded
        saved = self.arrays, self.dynamic_arrays, self.dynamic_arrays_2d
        self.arrays, self.dynamic_arrays, self.dynamic_arrays_2d = (
            {var: name for var, name in specs.items() if var in self.read_back} for specs in saved)
        try:
            super().generate_objects_source(chosen, arange_arrays, [], static_array_specs, networks, timed_arrays)
        finally:
            self.arrays, self.dynamic_arrays, self.dynamic_arrays_2d = saved
        source = every.contents.cpp_file
        start, end = function_span(source, "_write_arrays")
        chosen_start, chosen_end = function_span(chosen.contents.cpp_file, "_write_arrays")
        cpp = (source[:start] + _renamed(source[start:end], _EVERY) + "\n\n"
               + _renamed(chosen.contents.cpp_file[chosen_start:chosen_end], _CHOSEN) + _DISPATCH + source[end:])
        cpp = fatal_file_errors(cpp)
        writer.write("objects.*", SimpleNamespace(cpp_file=cpp, h_file=every.contents.h_file))


all_devices[DEVICE_NAME] = ReadBackDevice()
