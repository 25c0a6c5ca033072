"""The C++ standalone binary as a fork server: a run without starting a process, its set-up done ahead.

Every run of a compiled network used to be a new process: Python spawns it, the loader maps and links its
libraries, Brian's ``brian_start`` allocates and loads every array and the main lines create the synapses (4.7 ms
for the 1.25 M synapses of the dense 2048-500-500 benchmark network), and only then are the run's values set and
the network run; after writing its results the process frees everything and ends, and only then does Python go on.
None of this depends on the run's values, and all of it was on the training loop's critical path.

Served (:class:`ServedBinary`), the same binary starts once, as ``main --decolle-serve COMMANDS REPLIES PENDING``,
and forks one child per run. A child is the binary exactly as a fresh process runs it (Brian's ``main`` from its
first line, in a copy of a process that has run nothing), so every run computes what a fresh process computes:
the equivalence tests run through it. The child does everything before the run's values while Python still reads
the previous run's outputs, then waits for its command (results folder, output file, ``name=value`` arguments);
it replies as soon as its results are written, so freeing its memory and ending overlap Python's work too. The
C++ side is ``templates/served_main.cpp``, spliced into Brian's generated ``main.cpp`` by :func:`served_main`
(Brian's ``main`` renamed, one call before ``set_from_command_line``); without ``--decolle-serve`` the binary
runs as before.

Brian's ``device.run`` keeps its whole bookkeeping (run arguments, caches, environment, ``last_run_info.txt``, the
check for invalid states): only its one process launch, ``subprocess.call``, goes to the server
(:func:`launching`). A server belongs to one process and one build: it is started again when the binary, its
static arrays or the environment changed since it started (:func:`build_identity`; a waiting child may have
loaded them while another process built the folder), after a failed run (which ends it) and in a forked process.
``$DECOLLE_SERVED_BINARY=0`` runs a new process every run, as Brian does.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path

import brian2.devices.cpp_standalone.device as brian_standalone

#: the binary's first argument that makes it a server
SERVE_FLAG = "--decolle-serve"
#: environment variable: "0" starts a new process for every run (Brian's way)
SERVED_VARIABLE = "DECOLLE_SERVED_BINARY"
#: Brian's command that runs the binary (``prefs.devices.cpp_standalone.run_cmd_unix``): only this one is served
BINARY_COMMAND = "./main"

_SERVER_SOURCE = Path(__file__).parent / "templates" / "served_main.cpp"
_MAIN = "int main(int argc, char **argv)\n{"
_SIGNAL = "std::signal(SIGINT, _int_handler);"
_SET_VALUES = "set_from_command_line(args);"
_PROLOGUE = """
// decolle_brian (backends/served.py): served, Brian's main below waits for its command before its run's values
static bool _decolle_served = false;
static void _decolle_await_command(std::vector<std::string>& args);
"""
_launch_lock = threading.Lock()
_servers: weakref.WeakSet = weakref.WeakSet()  # this process's (a forked one closes none of its parent's)


def served_main(source: str) -> str | None:
    """Brian's generated ``main.cpp`` made servable (the module docstring), or None if it does not have the one
    ``main``, SIGINT handler and ``set_from_command_line`` call this expects (the binary is then never served)."""
    if any(source.count(text) != 1 for text in (_MAIN, _SIGNAL, _SET_VALUES)):
        return None
    start = source.index(_MAIN)
    main = source[start:].replace(_MAIN, "static int _decolle_main(int argc, char **argv)\n{", 1)
    main = main.replace(_SIGNAL, f"if (!_decolle_served) {_SIGNAL}", 1)
    main = main.replace(_SET_VALUES, f"_decolle_await_command(args);\n        {_SET_VALUES}", 1)
    return source[:start] + _PROLOGUE + "\n" + main + "\n" + _SERVER_SOURCE.read_text()


def build_identity(project_dir: str | Path) -> tuple:
    """What a server's runs depend on besides their arguments: the binary and every static array it loads (name,
    inode, size, time: a build replaces a changed file by a rename, a writer in place changes its time), and
    the environment. A server is used only while this is what it was when the server started; a child may load
    static arrays while another process builds the folder, and then this differs by the time of its run."""
    project = Path(project_dir)
    files = []
    for folder, names in ((project, ["main"]), (project / "static_arrays", None)):
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if names is None or entry.name in names:
                        status = entry.stat(follow_symlinks=False)
                        files.append((entry.path, status.st_ino, status.st_size, status.st_mtime_ns))
        except FileNotFoundError:
            files.append((str(folder), None))
    return os.getpid(), tuple(sorted(files)), tuple(sorted(os.environ.items()))


class ServedBinary:
    """One server of a build folder's binary for this process: :meth:`call` in place of ``subprocess.call``.

    Parameters
    ----------
    project_dir : Path
        The build folder (the binary's working directory, as Brian runs it).
    pending_output : Path
        Where a child's printing goes until its command names the run's own output file (read back into the run's
        output when the run fails before that).
    """

    def __init__(self, project_dir: Path, pending_output: Path):
        self.project_dir = Path(project_dir)
        self.pending_output = Path(pending_output)
        self.identity = build_identity(project_dir)
        self._run = 0
        self._replies = b""
        commands_read, self._commands = os.pipe()
        self._reply_pipe, replies_write = os.pipe()
        try:
            self._process = subprocess.Popen(
                [BINARY_COMMAND, SERVE_FLAG, str(commands_read), str(replies_write), str(self.pending_output)],
                cwd=self.project_dir, pass_fds=(commands_read, replies_write))
        except BaseException:
            for fd in (self._commands, self._reply_pipe):
                os.close(fd)
            raise
        finally:
            os.close(commands_read)
            os.close(replies_write)
        self._finalizer = weakref.finalize(self, _stop, self._process, self._commands, self._reply_pipe, os.getpid())
        atexit.register(self._finalizer)
        _servers.add(self)

    @property
    def alive(self) -> bool:
        """Whether the server still runs (a failed run or a closed server ends it)."""
        return self._finalizer.alive and self._process.poll() is None

    def call(self, command: list[str], stdout=None) -> int:
        """Run the binary with ``command`` (``[BINARY_COMMAND, "--results_dir", folder, *arguments]``, as Brian's
        ``device.run`` calls it) and return its exit status (a signal: minus its number), as ``subprocess.call``
        does; ``stdout`` an open file (its ``name`` is written to) or None (the server's own output)."""
        if command[:2] != [BINARY_COMMAND, "--results_dir"] or len(command) < 3:
            raise ValueError(f"A served binary runs '{BINARY_COMMAND} --results_dir FOLDER ...', not {command[:3]}")
        self._run += 1
        output = "" if stdout is None else os.path.abspath(stdout.name)
        fields = [command[2], output, *command[3:]]
        body = b"".join(field.encode() + b"\0" for field in fields)
        try:
            _write_all(self._commands, b"%d\n" % len(body) + body)
            status = self._reply()
        except BrokenPipeError:
            status = self._reply()  # it ended: its last words say why
        except BaseException:  # e.g. KeyboardInterrupt: the run is abandoned, and its process with the server
            self.close()
            raise
        if status != 0:
            self._add_pending_output(stdout)
            self.close()
        return status

    def _reply(self) -> int:
        """The status of this run: the child's "<run> 0" or the server's "<run> end <status>"; earlier runs' lines
        (the end of a child that replied) are passed over."""
        while True:
            while b"\n" not in self._replies:
                data = os.read(self._reply_pipe, 4096)
                if not data:
                    return -1  # the server ended without a word (killed)
                self._replies += data
            line, self._replies = self._replies.split(b"\n", 1)
            run, *status = line.decode().split()
            if int(run) == self._run:
                return int(status[-1])

    def _add_pending_output(self, stdout) -> None:
        """A run that failed before its command: what it printed is in the pending file, not in the run's output."""
        if stdout is None or not self.pending_output.is_file():
            return
        printed = self.pending_output.read_text(errors="replace")
        if printed:
            stdout.write(printed)
            stdout.flush()

    def close(self) -> None:
        """End the server (its waiting child reads the end of its commands and ends, and so does the server)."""
        self._finalizer()


def close_servers() -> None:
    """End every server of this process (before a build: no earlier build of this process runs again)."""
    for server in list(_servers):
        server.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _stop(process: subprocess.Popen, commands: int, replies: int, owner: int) -> None:
    if os.getpid() != owner:  # a forked process's copy: the server is its parent's
        return
    for fd in (commands, replies):
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _Launcher:
    """Brian's ``subprocess`` module as its ``device.run`` sees it, with ``call`` going to a served binary."""

    def __init__(self, call):
        self.call = call

    def __getattr__(self, name):
        return getattr(subprocess, name)


@contextmanager
def launching(call):
    """Within this block Brian's ``device.run`` starts its binary with ``call(command, stdout=...)`` instead of
    ``subprocess.call``: Brian has no hook for the launch, and its module's name ``subprocess`` is the one place."""
    with _launch_lock:  # one device per process, one run at a time
        saved = brian_standalone.subprocess
        brian_standalone.subprocess = _Launcher(call)
        try:
            yield
        finally:
            brian_standalone.subprocess = saved
