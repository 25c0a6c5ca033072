"""Sweep specifications: a base run configuration, axes over any of its keys, and seeds.

A sweep file (TOML, usually under ``runs/sweeps/``)::

    [sweep]
    name = "tau_mem_vs_lr"
    base = "../digits.toml"      # a run configuration, relative to this file
    seeds = [0, 1]               # or: repeats = 2 (base seed, base seed + 1)
    metric = "acc"               # what the figures show: acc, loss or rate_hz (test split, per layer)

    [base]                       # overrides of the base configuration
    data = { train_samples = 480 }

    [grid]                       # cartesian product
    "neuron.alpha" = [0.90, 0.95, 0.97]
    learning.lr = [0.3, 1.0]     # unquoted dotted keys work too

    [zip]                        # paired: the i-th values go together (all lists of one length)
    "neuron.beta" = [0.85, 0.92]
    "neuron.alpharp" = [0.5, 0.65]

    [random]                     # n seeded draws
    n = 8
    seed = 1
    "learning.lr" = { log_uniform = [0.01, 3.0] }
    "neuron.alpha" = { uniform = [0.9, 0.99] }
    "network.layers" = [[64], [128]]            # a list: one of its values (= { choice = [...] })

Points are the product grid x zip rows x random draws x seeds, in that order (seeds vary fastest). Every
key is checked against the configuration schema, and every point's configuration is resolved and checked,
before anything runs: a typo fails at once with the key named.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decolle_brian.config import Config, ConfigError, KeyInfo, key_info, precheck, read_toml, resolve
from decolle_brian.config import set_path as _set_path
from decolle_brian.errors import SweepError
from decolle_brian.sweep.folder import METRICS

SECTIONS = ("sweep", "base", "grid", "zip", "random")
SWEEP_KEYS = ("name", "base", "seeds", "repeats", "metric", "description", "build_dir")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")



@dataclass(frozen=True)
class Axis:
    """One swept configuration key.

    Attributes
    ----------
    kind : {"grid", "zip", "random"}
    key : str
        Dotted configuration key, e.g. ``"learning.lr"``.
    values : list
        Grid and zip: the values in order. Random: empty.
    dist : str
        Random only: ``uniform``, ``log_uniform``, ``int_uniform`` or ``choice``.
    args : list
        Random only: ``[low, high]`` or the choices.
    """

    kind: str
    key: str
    values: list = field(default_factory=list)
    dist: str = ""
    args: list = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {"kind": self.kind, "key": self.key}
        out.update({"values": self.values} if self.kind != "random" else {"dist": self.dist, "args": self.args})
        return out


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its id, the swept values and seed, and the resolved configuration."""

    id: str
    params: dict
    seed: int
    config: dict


@dataclass
class SweepSpec:
    """A parsed, validated sweep (see the module docstring for the file format).

    Attributes
    ----------
    name : str
    base_raw : dict
        The base configuration with ``[base]`` overrides applied, not yet resolved (what points start from).
    axes : list of Axis
    seeds : list of int
    random_n, random_seed : int
    metric : str
    description : str
    build_dir : str
        Root of the compiled networks ('' = ``$DECOLLE_BUILD_DIR`` or the temp folder).
    source : str
        Where the spec came from (for messages and ``sweep.json``).
    """

    name: str
    base_raw: dict
    axes: list
    seeds: list
    random_n: int = 0
    random_seed: int = 0
    metric: str = "acc"
    description: str = ""
    build_dir: str = ""
    source: str = ""

    @property
    def keys(self) -> list[str]:
        """Swept configuration keys in axis order."""
        return [axis.key for axis in self.axes]

    def points(self) -> list[Point]:
        """Expand to points (validated); ids ``p000``, ``p001``, ... in grid x zip x random x seed order."""
        grid = [a for a in self.axes if a.kind == "grid"]
        zipped = [a for a in self.axes if a.kind == "zip"]
        rand = [a for a in self.axes if a.kind == "random"]
        grid_rows = list(itertools.product(*[a.values for a in grid])) if grid else [()]
        zip_rows = list(zip(*[a.values for a in zipped], strict=True)) if zipped else [()]
        rng = np.random.default_rng(self.random_seed)
        random_rows = [tuple(_draw(rng, a) for a in rand) for _ in range(self.random_n)] if rand else [()]
        combos = [(g, z, r) for g in grid_rows for z in zip_rows for r in random_rows]
        seeds = self.seeds or [None]  # no seeds: "seed" is itself an axis
        width = max(3, len(str(len(combos) * len(seeds) - 1)))
        points = []
        for g, z, r in combos:
            params = dict(zip([a.key for a in grid + zipped + rand], g + z + r, strict=True))
            for seed in seeds:
                seed = params["seed"] if seed is None else seed
                point_id = f"p{len(points):0{width}d}"
                points.append(Point(point_id, params, seed, self._config(point_id, params, seed)))
        return points

    def _config(self, point_id: str, params: dict, seed: int) -> dict:
        raw = copy.deepcopy(self.base_raw)
        for key, value in params.items():
            set_path(raw, key, copy.deepcopy(value))
        raw["seed"] = seed
        raw["name"] = point_id  # the point's run folder: <sweep>/points/<id>/<timestamp>/
        where = f"sweep point {point_id} ({', '.join(f'{k}={v!r}' for k, v in params.items())}, seed={seed})"
        try:
            config = resolve(raw)
            precheck(config)
        except ConfigError as exc:
            raise SweepError(f"{where}: {exc}") from None
        return config

    def as_dict(self) -> dict:
        """JSON-able description, stored in ``sweep.json`` so that ``--resume`` needs nothing else."""
        return {"name": self.name, "description": self.description, "source": self.source,
                "base_raw": self.base_raw, "axes": [a.as_dict() for a in self.axes], "seeds": self.seeds,
                "random_n": self.random_n, "random_seed": self.random_seed, "metric": self.metric,
                "build_dir": self.build_dir}

    @classmethod
    def from_dict(cls, data: dict) -> SweepSpec:
        """Inverse of :meth:`as_dict`."""
        axes = [Axis(a["kind"], a["key"], a.get("values", []), a.get("dist", ""), a.get("args", []))
                for a in data["axes"]]
        return cls(name=data["name"], base_raw=data["base_raw"], axes=axes, seeds=data["seeds"],
                   random_n=data["random_n"], random_seed=data["random_seed"], metric=data["metric"],
                   description=data.get("description", ""), build_dir=data.get("build_dir", ""),
                   source=data.get("source", ""))


# ---- loading ---------------------------------------------------------------------------------------------------
def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file; raise :class:`SweepError` naming the first bad key.

    Parameters
    ----------
    path : str or Path
        The sweep TOML. ``[sweep] base`` is relative to it.

    Returns
    -------
    SweepSpec
        Validated, including every point's configuration (call :meth:`SweepSpec.points`).
    """
    path = Path(path)
    data = read_toml(path, "sweep file", SweepError)
    return parse_sweep(data, path.parent, source=str(path))


def parse_sweep(data: dict, root: Path, source: str = "<sweep>") -> SweepSpec:
    """Validate a sweep given as a dict (a parsed TOML file); relative paths are resolved against ``root``."""
    _no_unknown(data, SECTIONS, "the sweep file", "")
    head = data.get("sweep", {})
    _table(head, "sweep")
    _no_unknown(head, SWEEP_KEYS, "[sweep]", "sweep.")
    if "base" not in head:
        raise SweepError("sweep.base: missing; name the run configuration the sweep starts from "
                         "(e.g. base = \"../digits.toml\", relative to the sweep file)")
    base_path = (Path(root) / _typed(head, "base", str, "sweep.")).resolve()
    try:
        base_raw = read_toml(base_path, "configuration file", SweepError)
    except SweepError as exc:
        raise SweepError(f"sweep.base: {exc}") from None
    overrides = data.get("base", {})
    _table(overrides, "base")
    for key, value in _flatten(overrides, leaf=lambda v: not isinstance(v, dict)):
        check_key(key, f"base.{key}")
        set_path(base_raw, key, value)
    base_raw.setdefault("training", {}).setdefault("progress", False)  # one bar over points, not one per worker
    device = base_raw.get("device", {})
    build_dir = _typed(head, "build_dir", str, "sweep.", "")
    if build_dir:
        build_dir = str((Path(root) / build_dir).resolve())
    elif isinstance(device, dict) and device.get("build_dir"):
        build_dir = str(Path(device["build_dir"]).resolve())  # a run's build folder: the sweep's build root
    if isinstance(device, dict):
        device["build_dir"] = ""  # the sweep places builds itself: one per structure, a private copy per worker

    axes: list[Axis] = []
    for kind in ("grid", "zip"):
        table = data.get(kind, {})
        _table(table, kind)
        for key, values in _flatten(table, leaf=lambda v: not isinstance(v, dict)):
            where = f"{kind}.{key}"
            check_key(key, where)
            _sweepable(key, where)
            if not isinstance(values, list) or not values:
                raise SweepError(f"{where}: expected a non-empty list of values, got {values!r}")
            axes.append(Axis(kind, key, values))
    lengths = {a.key: len(a.values) for a in axes if a.kind == "zip"}
    if len(set(lengths.values())) > 1:
        raise SweepError(f"zip: all lists must have the same length, got {lengths}")
    table = dict(data.get("random", {}))
    _table(table, "random")
    random_n = _typed(table, "n", int, "random.", 0) if table else 0
    random_seed = _typed(table, "seed", int, "random.", 0)
    table.pop("n", None)
    table.pop("seed", None)
    for key, value in _flatten(table, leaf=_is_distribution):
        axes.append(_random_axis(key, value))
    if any(a.kind == "random" for a in axes) and random_n < 1:
        raise SweepError("random.n: the number of random draws must be >= 1")
    if random_n and not any(a.kind == "random" for a in axes):
        raise SweepError("random: n draws of nothing; add keys to draw, e.g. \"learning.lr\" = "
                         "{ log_uniform = [1e-3, 1.0] }")
    seen: dict[str, str] = {}
    for axis in axes:
        if axis.key in seen:
            raise SweepError(f"{axis.kind}.{axis.key}: already swept in [{seen[axis.key]}]; sweep a key once")
        seen[axis.key] = axis.kind

    base_seed = base_raw.get("seed", Config.model_fields["seed"].default)
    if "seeds" in head and "repeats" in head:
        raise SweepError("sweep.seeds and sweep.repeats: give one of them")
    if "seed" in seen and ("seeds" in head or "repeats" in head):
        raise SweepError(f"{seen['seed']}.seed: the seed is swept as an axis; drop sweep.seeds / sweep.repeats")
    if "seeds" in head:
        seeds = head["seeds"]
        if (not isinstance(seeds, list) or not seeds
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
            raise SweepError(f"sweep.seeds: expected a non-empty list of integers >= 0, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise SweepError(f"sweep.seeds: repeated seeds in {seeds}")
    elif "repeats" in head:
        repeats = _typed(head, "repeats", int, "sweep.")
        if repeats < 1:
            raise SweepError(f"sweep.repeats: must be >= 1, got {repeats}")
        seeds = [base_seed + k for k in range(repeats)]
    else:
        seeds = [base_seed]
    if "seed" in seen:
        seeds = []  # the axis sets it
    metric = _typed(head, "metric", str, "sweep.", "acc")
    if metric not in METRICS:
        raise SweepError(f"sweep.metric: {metric!r} is not one of {sorted(METRICS)}")
    default_name = Path(source).stem if source.endswith(".toml") else "sweep"
    spec = SweepSpec(name=_typed(head, "name", str, "sweep.", default_name), base_raw=base_raw, axes=axes,
                     seeds=seeds, random_n=random_n, random_seed=random_seed, metric=metric,
                     description=_typed(head, "description", str, "sweep.", ""), build_dir=build_dir, source=source)
    spec.points()  # every point's configuration is checked now, before any run
    return spec


# ---- keys and values -------------------------------------------------------------------------------------------
def check_key(key: str, where: str) -> KeyInfo:
    """The configuration tree's entry for a dotted key (or a free-form table above it); SweepError otherwise."""
    try:
        return key_info(key)
    except ConfigError as exc:
        raise SweepError(f"{where}: {exc}") from None


def _sweepable(key: str, where: str) -> None:
    if key == "name":
        raise SweepError(f"{where}: the run name is the point id; sweep another key")
    if key == "device.build_dir":
        raise SweepError(f"{where}: the sweep places builds itself (see [sweep] build_dir)")


def set_path(raw: dict, key: str, value: Any) -> None:
    """Set a dotted key in a raw (unresolved) configuration, creating tables on the way."""
    _set_path(raw, key, value, error=SweepError)


def _flatten(table: dict, leaf, prefix: str = ""):
    """(dotted key, value) pairs of nested tables; ``leaf(value)`` (or an empty table) says where to stop."""
    for key, value in table.items():
        full = f"{prefix}{key}"
        if leaf(value) or not value:
            yield full, value
        else:
            yield from _flatten(value, leaf, full + ".")


def _is_distribution(value) -> bool:
    return not isinstance(value, dict) or (len(value) == 1 and next(iter(value)) in DISTRIBUTIONS)


def _random_axis(key: str, value) -> Axis:
    where = f"random.{key}"
    field_ = check_key(key, where)
    _sweepable(key, where)
    if isinstance(value, list):
        value = {"choice": value}
    if not isinstance(value, dict):
        raise SweepError(f"{where}: expected a list of choices or a table like {{ uniform = [low, high] }}, "
                         f"got {value!r}")
    (dist, args), = value.items()
    if dist == "choice":
        if not isinstance(args, list) or not args:
            raise SweepError(f"{where}.choice: expected a non-empty list, got {args!r}")
        return Axis("random", key, dist=dist, args=args)
    if (not isinstance(args, list) or len(args) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in args)
            or not args[0] < args[1]):
        raise SweepError(f"{where}.{dist}: expected [low, high] with low < high, got {args!r}")
    if dist == "log_uniform" and args[0] <= 0:
        raise SweepError(f"{where}.log_uniform: the range must be > 0, got {args!r}")
    if dist == "int_uniform" and not all(isinstance(v, int) for v in args):
        raise SweepError(f"{where}.int_uniform: expected integer bounds, got {args!r}")
    if field_.integer and dist != "int_uniform":
        dist = f"{dist}:int"  # an integer key: draws are rounded
    return Axis("random", key, dist=dist, args=list(args))


def _draw(rng: np.random.Generator, axis: Axis):
    dist, _, as_int = axis.dist.partition(":")
    if dist == "choice":
        return copy.deepcopy(axis.args[int(rng.integers(len(axis.args)))])
    low, high = axis.args
    if dist == "int_uniform":
        return int(rng.integers(low, high + 1))
    value = rng.uniform(low, high) if dist == "uniform" else math.exp(rng.uniform(math.log(low), math.log(high)))
    if as_int:
        return int(round(value))
    return float(f"{value:.6g}")  # readable in tables and file names; still seeded and reproducible


def _no_unknown(table: dict, allowed, what: str, prefix: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise SweepError(f"unknown key(s) {[prefix + k for k in unknown]} in {what}; valid: {list(allowed)}")


def _table(value, where: str) -> None:
    if not isinstance(value, dict):
        raise SweepError(f"{where}: expected a table, got {value!r}")


def _typed(table: dict, key: str, types, prefix: str, default=None):
    if key not in table:
        if default is None:
            raise SweepError(f"{prefix}{key}: missing")
        return default
    value = table[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise SweepError(f"{prefix}{key}: expected {getattr(types, '__name__', types)}, got {value!r}")
    return value
