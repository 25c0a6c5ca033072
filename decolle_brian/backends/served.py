"""The C++ standalone binary as a fork server: a run without starting a process, its set-up done ahead.

Every run of a compiled network used to be a new process: Python spawns it, the loader maps and links its
libraries, Brian's ``brian_start`` allocates and loads every array and the main lines create the synapses (4.7 ms
for the 1.25 M synapses of the dense 2048-500-500 benchmark network), and only then are the run's values set and
the network run; after writing its results the process frees everything and ends, and only then does Python go on.
None of this depends on the run's values, and all of it was on the training loop's critical path.

Served (:class:`ServedBinary`), the same binary starts once, as ``main --decolle-serve COMMANDS REPLIES PENDING
LOCK``, and forks one child per run. A child is the binary exactly as a fresh process runs it (Brian's ``main`` from
its first line, in a copy of a process that has run nothing), so every run computes what a fresh process computes:
the equivalence tests run through it. The child does everything before the run's values while Python still reads
the previous run's outputs (reading the static arrays with the build folder's LOCK held shared), then waits until
the server, the only reader of COMMANDS, gives it its command whole (results folder, output file, ``name=value``
arguments) on a pipe of its own; it replies as soon as its results are written, so freeing its memory and ending
overlap Python's work too. The
C++ side is ``templates/served_main.cpp``, spliced into Brian's generated ``main.cpp`` by :func:`served_main`
(Brian's ``main`` renamed, one call before ``set_from_command_line``); without ``--decolle-serve`` the binary
runs as before.

Brian's ``device.run`` keeps its whole bookkeeping (run arguments, caches, environment, ``last_run_info.txt``, the
check for invalid states): only its one process launch, ``subprocess.call``, goes to the server
(:func:`launching`). A server belongs to one process and one build: it is started again when the binary, its
static arrays or the environment changed since it started (:func:`build_identity`; a child reads the static
arrays holding the build folder's lock shared, as a run does, but a build may replace them before its run), when
it was killed or ended after a child failed before its command (a failed run's child is just gone: the next run has
a fresh one), and in a forked process.
``$DECOLLE_SERVED_BINARY=0`` runs a new process every run, as Brian does.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
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
_servers: weakref.WeakSet = weakref.WeakSet()  # this process's (a forked one forgets its parent's: _after_fork)
_starting: set[int] = set()  # the pipe ends of a server being started
logger = logging.getLogger(__name__)


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
        Where a child's printing goes until its command names the run's output file (read back into the run's
        output when the run fails before that).
    lock_file : Path
        The build folder's lock (:func:`~decolle_brian.backends.base.build_folder_lock`): a child holds it shared
        while it reads the static arrays, before its command.
    """

    def __init__(self, project_dir: Path, pending_output: Path, lock_file: Path):
        self.project_dir = Path(project_dir)
        self.pending_output = Path(pending_output)
        self.identity = build_identity(project_dir)
        self._run = 0
        self._replies = b""
        commands_read, self._commands = os.pipe()
        self._reply_pipe, replies_write = os.pipe()
        starting = {commands_read, self._commands, self._reply_pipe, replies_write}
        _starting.update(starting)  # a fork meanwhile closes them (_after_fork)
        try:
            self._process = subprocess.Popen(
                [BINARY_COMMAND, SERVE_FLAG, str(commands_read), str(replies_write), str(self.pending_output),
                 str(lock_file)], cwd=self.project_dir, pass_fds=(commands_read, replies_write))
        except BaseException:
            for fd in (self._commands, self._reply_pipe):
                os.close(fd)
            raise
        finally:
            _starting.difference_update(starting)
            os.close(commands_read)
            os.close(replies_write)
        # at exit too (weakref.finalize's default); a forked process drops its copy instead (_after_fork)
        self._finalizer = weakref.finalize(self, _stop, self._process, self._commands, self._reply_pipe)
        _servers.add(self)

    @property
    def alive(self) -> bool:
        """Whether the server still runs (closed, killed, or ended after a failure before any command: not)."""
        return self._finalizer.alive and self._process.poll() is None

    def call(self, command: list[str], stdout=None) -> int:
        """Run the binary with ``command`` (``[BINARY_COMMAND, "--results_dir", folder, *arguments]``, as Brian's
        ``device.run`` calls it) and return its exit status (a signal: minus its number), as ``subprocess.call``
        does; ``stdout`` an open file (its ``name`` is written to) or None (the server's own output)."""
        if command[:2] != [BINARY_COMMAND, "--results_dir"] or len(command) < 3:
            raise ValueError(f"A served binary runs '{BINARY_COMMAND} --results_dir FOLDER ...', not {command[:3]}")
        output = "" if stdout is None else os.path.abspath(stdout.name)
        fields = [str(self._run + 1), command[2], output, *command[3:]]
        if any("\0" in field for field in fields):
            raise ValueError("A served binary's arguments cannot hold a NUL character")
        self._run += 1
        body = b"".join(os.fsencode(field) + b"\0" for field in fields)
        try:
            try:
                _write_all(self._commands, b"%d\n" % len(body) + body)
            except BrokenPipeError:
                pass  # it ended: its last words say why
            status, given = self._status()
        except BaseException:  # e.g. KeyboardInterrupt: the run is abandoned at once, as subprocess.call kills
            self.close(kill=True)
            raise
        if status != 0 and not given:  # a child given the command printed into the run's output itself
            self._add_pending_output(stdout)
        return status

    def _status(self) -> tuple[int, bool]:
        """This run's exit status, from the replies (templates/served_main.cpp): its child's "ok", the server's
        "end" of its child; a child lost before it was given the command leaves it to the next, unless the server
        ended (then that child's status, or -1 when the server was killed); and whether a child was given it."""
        lost = None
        while True:
            line = self._line()
            if line is None:  # the server ended
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                return (-1 if lost is None else lost), False
            run, kind, *status = line.split()
            run = int(run)
            if run == self._run and kind == "ok":
                return 0, True
            if run == self._run and kind == "end":
                return int(status[0]), True
            if kind == "lost":
                lost = int(status[0])
            elif kind == "end" and int(status[0]) != 0:  # an earlier run's child, after its results were written
                logger.warning(f"The served binary's child of an earlier run ended with status {status[0]} after "
                               f"writing its results ({self.project_dir})")

    def _line(self) -> str | None:
        """The next reply line, None when the server and its children closed the pipe."""
        while b"\n" not in self._replies:
            data = os.read(self._reply_pipe, 4096)
            if not data:
                return None
            self._replies += data
        line, self._replies = self._replies.split(b"\n", 1)
        return line.decode()

    def _add_pending_output(self, stdout) -> None:
        """A run that failed before its command: what it printed is in the pending file, not in the run's output."""
        if not self.pending_output.is_file():
            return
        printed = self.pending_output.read_text(errors="replace")
        if not printed:
            return
        if stdout is None:
            sys.stdout.write(printed)
            sys.stdout.flush()
            return
        with open(stdout.name, "a") as output:  # after what the child wrote, if it got that far
            output.write(printed)

    def close(self, kill: bool = False) -> None:
        """End the server: its waiting child reads the end of its commands and ends, and so does the server;
        ``kill``: at once, a run in progress with it."""
        if kill and self._finalizer.alive:
            self._process.kill()
        self._finalizer()

    def _forget(self) -> None:
        """In a forked process: close this copy's pipe ends (the server's end of input must not wait for this
        process) and never use or stop the parent's server."""
        if self._finalizer.detach() is not None:
            _close_quietly((self._commands, self._reply_pipe))


def close_servers() -> None:
    """End every server of this process (before a build: no earlier build of this process runs again)."""
    for server in list(_servers):
        server.close()


def _after_fork() -> None:
    global _launch_lock
    _launch_lock = threading.Lock()  # a fork while a run was in progress: the child's copy is not held by anyone
    for server in list(_servers):
        server._forget()
    _servers.clear()
    _close_quietly(list(_starting))
    _starting.clear()


os.register_at_fork(after_in_child=_after_fork)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _close_quietly(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass  # closed already


def _stop(process: subprocess.Popen, commands: int, replies: int) -> None:
    _close_quietly((commands, replies))
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
