"""Running a sweep: a local pool of worker processes, or a Dask cluster, with an atomic record of every point.

The sweep folder's files and their format are :mod:`decolle_brian.sweep.folder`; :class:`SweepDir` keeps
``state.json`` and ``sweep.csv`` up to date after every point, so a sweep killed at any moment keeps every
finished point; ``--resume`` skips them and reruns the others (an interrupted point continues from its
checkpoint).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
from pathlib import Path

from brian2.utils.filelock import FileLock, Timeout
from tqdm.auto import tqdm

from decolle_brian.store import atomic_write_text, new_run_dir
from decolle_brian.sweep.builds import default_build_root
from decolle_brian.sweep.folder import (  # noqa: F401 - STATE_JSON, read_sweep_csv: the old import path
    STATE_JSON,
    SWEEP_CSV,
    SWEEP_JSON,
    SWEEP_TOML,
    new_point_record,
    read_state,
    read_sweep_csv,
    read_sweep_json,
    table_row,
    write_state,
    write_sweep_csv,
    write_sweep_json,
)
from decolle_brian.sweep.spec import SweepError, SweepSpec, load_sweep
from decolle_brian.sweep.worker import STOP, finished_run, point_dir, pool_initializer, run_point, run_point_subprocess

logger = logging.getLogger(__name__)
MAX_CRASHES = 2  # a point whose worker process dies this often in one session is recorded as failed


# ---- the sweep folder ----------------------------------------------------------------------------------------
class SweepDir:
    """A sweep folder being run: its spec, points and their state (format: :mod:`decolle_brian.sweep.folder`)."""

    def __init__(self, path: Path, spec: SweepSpec, state: dict):
        self.path, self.spec, self.state = Path(path), spec, state
        self.points = spec.points()
        self._summaries: dict[str, dict] = {}

    @classmethod
    def create(cls, spec: SweepSpec, out: str | Path, spec_text: str = "") -> SweepDir:
        path = new_run_dir(Path(out), spec.name)
        points = spec.points()
        write_sweep_json(path, spec.as_dict(), [{"id": p.id, "params": p.params, "seed": p.seed} for p in points])
        if spec_text:
            atomic_write_text(path / SWEEP_TOML, spec_text)
        state = {p.id: new_point_record() for p in points}
        sweep = cls(path, spec, state)
        sweep.save()
        return sweep

    @classmethod
    def open(cls, path: str | Path) -> SweepDir:
        path = Path(path)
        stored = read_sweep_json(path)
        sweep = cls(path, SweepSpec.from_dict(stored["spec"]), read_state(path))
        expected = [(p["id"], p["params"], p["seed"]) for p in stored["points"]]
        if [(p.id, p.params, p.seed) for p in sweep.points] != expected:
            raise SweepError(f"{path}/{SWEEP_JSON}: its points no longer expand the same way; start a new sweep")
        for p in sweep.points:
            sweep.state.setdefault(p.id, new_point_record())
        return sweep

    def save(self) -> None:
        """Write state.json and sweep.csv (each atomically)."""
        write_state(self.path, self.state)
        write_sweep_csv(self.path, self.rows())

    def record(self, result: dict) -> None:
        """Store one point's result and save."""
        rec = self.state[result["id"]]
        rec["attempts"] += 1
        rec["compiles"] += int(bool(result.get("compiled")))
        rec["compiled"] = rec["compiled"] or bool(result.get("compiled"))
        for key in ("status", "error", "wall_s", "structure", "run_dir", "host", "resumed"):
            if key in result:
                rec[key] = result[key]
        rec["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._summaries.pop(result["id"], None)
        self.save()

    def summary(self, point_id: str) -> dict | None:
        rec = self.state[point_id]
        if rec["status"] != "done" or not rec["run_dir"]:
            return None
        if point_id not in self._summaries:
            self._summaries[point_id] = json.loads((self.path / rec["run_dir"] / "summary.json").read_text())
        return self._summaries[point_id]

    def rows(self) -> list[dict]:
        """One row per point (what sweep.csv holds)."""
        return [table_row(p.id, p.seed, p.params, self.state[p.id], self.summary(p.id)) for p in self.points]

    def counts(self) -> dict:
        statuses = [rec["status"] for rec in self.state.values()]
        return {"points": len(self.points), "done": statuses.count("done"), "failed": statuses.count("failed"),
                "pending": len(statuses) - statuses.count("done") - statuses.count("failed"),
                "compiles": sum(rec["compiles"] for rec in self.state.values()),
                "structures": len({rec["structure"] for rec in self.state.values() if rec["structure"]})}


# ---- executors -----------------------------------------------------------------------------------------------
class _LocalPool:
    """Worker processes on this machine (spawned: Brian has one global device per process)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.where = f"{workers} local worker process{'es' if workers > 1 else ''}"
        self._new_pool()

    def _new_pool(self):
        self.pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=pool_initializer)

    def submit(self, task: dict):
        if getattr(self.pool, "_broken", False):
            self._new_pool()
        return self.pool.submit(run_point, task)

    @staticmethod
    def as_completed(futures):
        return cf.as_completed(futures)

    def interrupt(self, futures) -> None:
        for future in futures:
            future.cancel()
        for process in list(getattr(self.pool, "_processes", {}).values()):  # running points: checkpoint, stop
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Dask:
    """A dask.distributed cluster: an existing one (``scheduler``) or a LocalCluster of ``workers`` processes."""

    def __init__(self, workers: int, scheduler: str | None):
        try:
            from dask.distributed import Client, LocalCluster  # noqa: PLC0415
        except ImportError:
            raise SweepError("--scheduler/--dask-local need dask.distributed: pip install 'decolle-brian[dask]'") \
                from None
        self.cluster = None
        try:
            if scheduler:
                self.client = Client(scheduler, timeout=30)
            else:
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None)
                self.client = Client(self.cluster)
        except (OSError, TimeoutError) as exc:
            raise SweepError(f"cannot reach the Dask {'scheduler ' + scheduler if scheduler else 'LocalCluster'}: "
                             f"{exc}") from None
        self._prefix = f"decolle-sweep-{uuid.uuid4().hex[:8]}"
        self.where = f"Dask cluster {scheduler}" if scheduler else f"a Dask LocalCluster of {workers} workers"

    def submit(self, task: dict):
        # one point per task, each in a fresh process (see worker.py); pure=False: reruns really run
        return self.client.submit(run_point_subprocess, task, key=f"{self._prefix}-{task['id']}-{time.time_ns()}",
                                  pure=False, retries=0)

    @staticmethod
    def as_completed(futures):
        from dask.distributed import as_completed  # noqa: PLC0415

        return as_completed(futures)

    def interrupt(self, futures) -> None:
        self.client.cancel(list(futures))

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


# ---- running -------------------------------------------------------------------------------------------------
class _Stop(KeyboardInterrupt):  # a signal, handled as Ctrl-C is
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def run_sweep(spec: SweepSpec | str | Path | None = None, out: str | Path = "runs/out/sweeps", *,
              workers: int = 2, scheduler: str | None = None, dask_local: bool = False,
              resume: str | Path | None = None, log=None, progress: bool = True, plots: bool = True) -> Path:
    """Run a sweep (or resume one) and return its folder.

    Parameters
    ----------
    spec : SweepSpec or path, optional
        The sweep; optional with ``resume`` (the stored one is used; a given one must match it).
    out : path
        Sweeps go to ``out/<name>/<timestamp>/``.
    workers : int
        Local worker processes, or the size of the Dask LocalCluster.
    scheduler : str, optional
        Address of a running dask.distributed scheduler (``tcp://host:8786``); its workers need this
        package, the data and the sweep folder (a shared file system).
    dask_local : bool
        Start a dask LocalCluster of ``workers`` single-threaded processes.
    resume : path, optional
        A sweep folder: finished points are kept, the others run (interrupted ones from their checkpoints).
    log : callable, optional
        Where the progress lines go; default the ``decolle_brian.sweep`` logger at INFO (the command line prints
        it as plain lines, :func:`decolle_brian.logs.console_logging`).
    progress : bool
        A tqdm bar over points.
    plots : bool
        Draw the summary figures at the end.

    Returns
    -------
    Path
        The sweep folder.

    Raises
    ------
    SweepError
        Bad spec or options, a foreign or busy sweep folder (before any point runs).
    decolle_brian.experiment.Interrupted
        SIGINT/SIGTERM: running points checkpointed, state saved; continue with ``--resume``.
    """
    log = log or logger.info
    if scheduler and dask_local:
        raise SweepError("--scheduler and --dask-local exclude each other")
    if not isinstance(workers, int) or workers < 1:
        raise SweepError(f"--workers must be a positive integer, got {workers!r}")
    spec_text = ""
    if isinstance(spec, str | Path):
        spec_text = Path(spec).read_text() if Path(spec).is_file() else ""
        spec = load_sweep(spec)
    if resume is not None:
        sweep = SweepDir.open(resume)
        if spec is not None and _comparable(spec) != _comparable(sweep.spec):
            raise SweepError(f"the sweep given differs from the one stored in {resume}/{SWEEP_JSON}; "
                             "resume without a sweep file (or with that one)")
    elif spec is None:
        raise SweepError("sweep needs a SPEC file or --resume SWEEP_DIR")
    # connect first: an unreachable scheduler fails before a sweep folder exists
    executor = _Dask(workers, scheduler) if (scheduler or dask_local) else _LocalPool(workers)
    try:
        if resume is None:
            sweep = SweepDir.create(spec, out, spec_text)
        lock = FileLock(str(sweep.path / ".sweep.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise SweepError(f"{sweep.path} is being run by another sweep process") from None
        try:
            return _run(sweep, executor, log, progress, plots)
        finally:
            lock.release()
    finally:
        executor.close()


def _comparable(spec: SweepSpec) -> dict:
    return {k: v for k, v in spec.as_dict().items() if k != "source"}  # the same file by another path is fine


def _run(sweep: SweepDir, executor, log, progress, plots) -> Path:
    from decolle_brian.experiment import Interrupted  # noqa: PLC0415

    build_root = sweep.spec.build_dir or str(default_build_root())
    (sweep.path / STOP).unlink(missing_ok=True)
    for p in sweep.points:  # finished before a sweep was killed, but not yet recorded
        run_dir = finished_run(point_dir(sweep.path, p.id)) if sweep.state[p.id]["status"] != "done" else None
        if run_dir is not None:
            summary = json.loads((run_dir / "summary.json").read_text())
            sweep.record({"id": p.id, "status": "done", "error": "", "run_dir": str(run_dir.relative_to(sweep.path)),
                          "structure": summary.get("structure_key", "")})
            sweep.state[p.id]["attempts"] -= 1  # collected, not run
    todo = [p for p in sweep.points if sweep.state[p.id]["status"] != "done"]
    log(f"Sweep {sweep.spec.name}: {len(sweep.points)} points, {len(todo)} to run on {executor.where}; "
        f"folder {sweep.path}")
    tasks = {p.id: {"sweep_dir": str(sweep.path.resolve()), "id": p.id, "config": p.config, "build_root": build_root}
             for p in todo}
    compiles_before = sweep.counts()["compiles"]
    stop: list[int] = []
    previous = _install_stop_handler(stop)
    try:
        futures = {executor.submit(tasks[p.id]): p.id for p in todo}
        crashes: dict[str, int] = {}
        with tqdm(total=len(sweep.points), initial=len(sweep.points) - len(todo), unit="point", desc=sweep.spec.name,
                  disable=not progress) as bar:
            pending = dict(futures)
            try:
                while pending:
                    for future in executor.as_completed(list(pending)):
                        point_id = pending.pop(future)
                        result = _result(future, point_id)
                        if result is None:  # the worker process died (not the point's own error): once more
                            crashes[point_id] = crashes.get(point_id, 0) + 1
                            if crashes[point_id] < MAX_CRASHES and not stop:
                                pending[executor.submit(tasks[point_id])] = point_id
                                break  # as_completed must be restarted with the new future
                            result = {"id": point_id, "status": "failed",
                                      "error": f"the worker process died {crashes[point_id]} times"}
                        sweep.record(result)
                        if result["status"] == "failed":
                            (bar.write if progress else log)(f"point {point_id} failed: {result['error']}")
                        bar.update(1)
                        counts = sweep.counts()
                        bar.set_postfix(failed=counts["failed"], compiles=counts["compiles"] - compiles_before)
            except KeyboardInterrupt as exc:
                signum = exc.signum if isinstance(exc, _Stop) else signal.SIGINT
                stop.append(signum)
                (sweep.path / STOP).touch()
                (bar.write if progress else log)(
                    f"Stopping ({signal.Signals(signum).name}): running points write a checkpoint ...")
                executor.interrupt(list(pending))
                for future, point_id in list(pending.items()):
                    result = _result(future, point_id, wait=isinstance(executor, _LocalPool))
                    if result is not None and result["status"] in ("done", "failed", "interrupted"):
                        sweep.record(result)
    finally:
        _restore_stop_handler(previous)
    counts = sweep.counts()
    log(f"{counts['compiles'] - compiles_before} compiles for {len(todo)} points run "
        f"({counts['compiles']} for all {counts['points']} points, {counts['structures']} network structure(s)); "
        f"{counts['done']} done, {counts['failed']} failed, {counts['pending']} not finished")
    if stop:
        signum = stop[0]
        raise Interrupted(f"Sweep stopped by {signal.Signals(signum).name}; finished points are kept in "
                          f"{sweep.path}. Continue with: decolle-brian sweep --resume {sweep.path}", 128 + signum)
    if plots and counts["done"]:
        try:
            from decolle_brian.sweep.plots import plot_sweep  # noqa: PLC0415

            paths = plot_sweep(sweep.path)
            log(f"figures: {', '.join(str(p) for p in paths if p.suffix == '.png')}")
        except Exception as exc:  # noqa: BLE001 - figures are a convenience; the results are in sweep.csv
            log(f"could not draw the sweep figures: {type(exc).__name__}: {exc}")
    log(f"results: {sweep.path / SWEEP_CSV}")
    return sweep.path


def _result(future, point_id: str, wait: bool = True) -> dict | None:
    """A future's result record; None when its worker process died."""
    try:
        if not wait and not future.done():
            return None
        return future.result()
    except cf.process.BrokenProcessPool:
        return None
    except cf.CancelledError:
        return None
    except Exception as exc:  # noqa: BLE001 - e.g. a Dask worker lost: recorded, the sweep goes on
        if type(exc).__name__ in ("CancelledError", "KilledWorker", "FutureCancelledError"):
            return None
        return {"id": point_id, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def _install_stop_handler(stop: list):
    """SIGTERM raises in the main thread as Ctrl-C does, so the sweep stops its points cleanly."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        if not stop:
            raise _Stop(signum)

    return signal.signal(signal.SIGTERM, handler)


def _restore_stop_handler(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
