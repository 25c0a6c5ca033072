"""One sweep point, run in a worker process: a normal run in the run store, with its build shared.

:func:`run_point` is what every executor calls: the local pool calls it in its worker processes; a Dask
task starts ``python -m decolle_brian.sweep.worker TASK.json RESULT.json`` (Dask runs tasks in threads,
and training handles SIGINT/SIGTERM, which only the main thread of a process may do; a process per point
also gives every point a fresh Brian device).

A point's files are ``<sweep>/points/<id>/``: the run folder ``<timestamp>/`` (config, metrics, summary,
checkpoint), ``worker.log`` (everything the worker printed, compiler output included) and
``error.txt`` (traceback of a failure). A point lock makes a rerun wait for a process of a killed sweep
that is still writing its last checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from brian2.utils.filelock import FileLock

STOP = ".stop"  # created in the sweep folder by a stopping sweep


def point_dir(sweep_dir: str | Path, point_id: str) -> Path:
    """The folder of one sweep point: ``SWEEP_DIR/points/POINT_ID``."""
    return Path(sweep_dir) / "points" / point_id


def run_folders(pdir: Path) -> list[Path]:
    """Run folders of a point, oldest first (normally one)."""
    if not pdir.is_dir():
        return []
    return sorted(p for p in pdir.iterdir() if p.is_dir() and (p / "config.toml").is_file())


def finished_run(pdir: Path) -> Path | None:
    """The point's finished run folder (it has ``summary.json``), if any."""
    done = [p for p in run_folders(pdir) if (p / "summary.json").is_file()]
    return done[-1] if done else None


def run_point(task: dict) -> dict:
    """Run (or resume, or collect) one point and return its result record.

    Parameters
    ----------
    task : dict
        ``sweep_dir`` (absolute), ``id``, ``config`` (resolved), ``build_root``.

    Returns
    -------
    dict
        ``id``, ``status`` (``done``, ``failed`` or ``interrupted``), ``error``, ``compiled``, ``structure``,
        ``run_dir`` (relative to the sweep folder), ``wall_s``, ``host``, ``pid``, ``resumed``.
    """
    started = time.time()
    sweep_dir = Path(task["sweep_dir"])
    pdir = point_dir(sweep_dir, task["id"])
    pdir.mkdir(parents=True, exist_ok=True)
    result = {"id": task["id"], "status": "failed", "error": "", "compiled": False, "structure": "",
              "run_dir": "", "wall_s": 0.0, "host": platform.node(), "pid": os.getpid(), "resumed": False}
    with FileLock(str(pdir / ".lock")), _output_to(pdir / "worker.log"):
        print(f"--- point {task['id']} on {result['host']} pid {result['pid']} at {time.ctime()}", flush=True)
        try:
            if (sweep_dir / STOP).exists():  # queued before the sweep was stopped: do not start
                raise InterruptedError("the sweep was stopped before this point started")
            _run(task, pdir, result)
        except BaseException as exc:  # noqa: BLE001 - every failure is recorded, the sweep goes on
            from decolle_brian.experiment import Interrupted  # noqa: PLC0415

            interrupted = isinstance(exc, Interrupted | InterruptedError | KeyboardInterrupt | SystemExit)
            result["status"] = "interrupted" if interrupted else "failed"
            result["error"] = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
            text = traceback.format_exc()
            print(text, flush=True)
            if not interrupted:
                (pdir / "error.txt").write_text(text)
        result["wall_s"] = round(time.time() - started, 3)
        print(f"--- point {task['id']}: {result['status']} after {result['wall_s']} s", flush=True)
    return result


def _run(task: dict, pdir: Path, result: dict) -> None:
    from decolle_brian.experiment import Experiment, train  # noqa: PLC0415
    from decolle_brian.logs import console_logging  # noqa: PLC0415
    from decolle_brian.sweep.builds import fresh_brian_names, structure_build  # noqa: PLC0415

    done = finished_run(pdir)
    if done is not None:  # finished before a sweep was killed: collect, do not rerun
        _describe(result, done, pdir.parent.parent)
        result["status"] = "done"
        return
    # an unfinished run with a checkpoint continues (bit-exact); anything else starts afresh
    runs = run_folders(pdir)
    resume = runs[-1] if runs and (runs[-1] / "checkpoint.h5").is_file() else None
    for stale in runs:
        if stale != resume:
            shutil.rmtree(stale)
    (pdir / "error.txt").unlink(missing_ok=True)
    config = task["config"]
    experiment = Experiment.from_config(config)  # data-dependent checks fail here, before any compile
    result["structure"] = experiment.spec.structure_key()

    slot = None
    try:
        with structure_build(experiment, task["build_root"]) as slot, console_logging():  # lines in worker.log
            del experiment
            fresh_brian_names()
            if resume is not None:
                result["resumed"] = True
                run_dir = train(None, resume=resume)
            else:
                run_dir = train(config, pdir.parent)
    finally:
        result["compiled"] = bool(slot and slot.compiled)  # counted even when the run then failed
    _describe(result, run_dir, pdir.parent.parent)
    result["status"] = "done"


def _describe(result: dict, run_dir: Path, sweep_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    result["run_dir"] = str(run_dir.relative_to(sweep_dir))
    result["structure"] = summary.get("structure_key", result["structure"])


@contextmanager
def _output_to(path: Path):
    """Send this process's stdout and stderr (file descriptors: compiler and Brian output too) to a file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def watch_parent(interval: float = 1.0) -> None:
    """SIGTERM this process when its parent dies (a killed sweep): the run checkpoints and stops.

    Without it, a worker of a sweep killed with SIGKILL would train on as an orphan.
    """
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def pool_initializer() -> None:
    """Initializer of the local pool's worker processes."""
    watch_parent()
    # an idle worker ignores Ctrl-C (the whole process group gets it): the sweep decides, and sends SIGTERM;
    # training installs its own handlers and checkpoints on either signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_point_subprocess(task: dict) -> dict:
    """Run a point in a fresh Python process (the Dask task); return its result record."""
    import subprocess  # noqa: PLC0415

    pdir = point_dir(task["sweep_dir"], task["id"])
    pdir.mkdir(parents=True, exist_ok=True)
    task_file, result_file = pdir / ".task.json", pdir / f".result-{os.getpid()}-{threading.get_ident()}.json"
    task_file.write_text(json.dumps(task))
    result_file.unlink(missing_ok=True)
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "decolle_brian.sweep.worker", str(task_file), str(result_file)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    try:
        return json.loads(result_file.read_text())
    except (FileNotFoundError, ValueError):
        tail = proc.stdout.strip().splitlines()[-5:]
        return {"id": task["id"], "status": "failed", "compiled": False, "structure": "", "run_dir": "",
                "error": f"worker process exited with status {proc.returncode}: {' | '.join(tail)}",
                "wall_s": round(time.time() - started, 3), "host": platform.node(), "pid": None, "resumed": False}
    finally:
        result_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m decolle_brian.sweep.worker TASK.json RESULT.json``."""
    task_file, result_file = argv if argv is not None else sys.argv[1:]
    watch_parent()
    result = run_point(json.loads(Path(task_file).read_text()))
    tmp = Path(result_file).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, result_file)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
