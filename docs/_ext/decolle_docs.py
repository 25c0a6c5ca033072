"""Pages of the documentation generated from the code at build time (a Sphinx extension).

At ``builder-inited`` it writes Markdown fragments into ``docs/_generated/`` (not committed), which the
hand-written pages include (headings start at H1 here; the pages include them with ``:heading-offset: 1``):

- ``configuration.md``: every configuration key from the pydantic schema of :mod:`decolle_brian.config`
  (type, default, bounds, description), and each data set's ``data.params``; a key without a description
  stops the build.
- ``cli.md``: every sub-command of ``decolle-brian`` from :func:`decolle_brian.cli.build_parser`.
- ``equations.md``: every ``equations/*.eq`` file, included from the file itself.
- ``exports.md``: the names of ``decolle_brian.__all__`` and where each is defined.
- ``rules.md``: the plasticity rule derived by :func:`decolle_brian.derivation.derive` for every built-in
  loss and surrogate, as ``decolle-brian derive`` prints it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


class GenerationError(ValueError):
    """The code does not say what a page needs (a key without a description): the build stops (Sphinx turns
    an error in an event handler into a failed build). Sphinx is not imported here, so the tests can check
    these pages without it."""

DOCS = Path(__file__).resolve().parent.parent
ROOT = DOCS.parent
GENERATED = DOCS / "_generated"


# ---- configuration ---------------------------------------------------------------------------------------------
def _resolve(schema: dict, node: dict) -> dict:
    ref = node.get("$ref")
    return schema["$defs"][ref.rsplit("/", 1)[1]] if ref else node


def _type_text(schema: dict, node: dict) -> str:
    if "enum" in node:
        return " | ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "anyOf" in node or "oneOf" in node:
        kinds = [_type_text(schema, _resolve(schema, n)) for n in node.get("anyOf", node.get("oneOf"))]
        return " or ".join(dict.fromkeys(kinds))  # once each, in order
    kind = node.get("type")
    if kind == "array":
        items = node.get("items")
        inner = _type_text(schema, _resolve(schema, items)) if items else "any"
        return f"list of {inner}"
    if kind == "object" and "properties" not in node:
        return "table"
    if kind == "object":
        return node.get("title", "table")
    return str(kind) if kind else "any"


BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"),
          ("minItems", "items >="), ("maxItems", "items <="), ("minLength", "length >="),
          ("maxLength", "length <="))


def _bounds_text(node: dict) -> str:
    parts = [f"{sign} {node[key]}" for key, sign in BOUNDS if key in node]
    for sub in node.get("anyOf", []):
        parts += [f"{sign} {sub[key]}" for key, sign in BOUNDS if key in sub]
    return ", ".join(parts)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _lookup(defaults: dict | None, key: str):
    """The default of a dotted key in the dumped default configuration (``None``: not there)."""
    node = defaults
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return (node,)


def schema_rows(schema: dict, node: dict, prefix: str = "", free_tables: tuple = (),
                defaults: dict | None = None) -> list[tuple]:
    """(key, type, default, bounds, description) of every leaf key under ``node``; tables are walked.

    A default made by a factory is not in the JSON schema; ``defaults`` (the default configuration, dumped)
    supplies it."""
    rows = []
    for name, sub in _resolve(schema, node).get("properties", {}).items():
        key = prefix + name
        target = _resolve(schema, sub)
        if "properties" in target and key not in free_tables:
            rows += schema_rows(schema, target, key + ".", free_tables, defaults)
            continue
        description = sub.get("description") or target.get("description")
        if not description:
            raise GenerationError(f"configuration key {key!r} has no description: add one where it is declared "
                                 f"(decolle_brian/config.py or the data set's options)")
        if "default" in sub:
            default = f"`{_cell(json.dumps(sub['default']))}`"
        elif _lookup(defaults, key) is not None:
            default = f"`{_cell(json.dumps(_lookup(defaults, key)[0]))}`"
        else:
            default = "(required)" if name in _resolve(schema, node).get("required", ()) else "(see description)"
        rows.append((key, _type_text(schema, target), default, _bounds_text(target), description))
    return rows


def _table(rows: list[tuple]) -> list[str]:
    lines = ["| key | type | default | bounds | description |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| `{k}` | {_cell(t)} | {d} | {_cell(b)} | {_cell(desc)} |" for k, t, d, b, desc in rows]
    return lines


def configuration_page() -> str:
    from decolle_brian.config import Config, json_schema, keys, params_table  # noqa: PLC0415
    from decolle_brian.data import DATASETS  # noqa: PLC0415

    schema = json_schema()
    rows = schema_rows(schema, schema, free_tables=("data.params", "learning.surrogate_params"),
                       defaults=Config().model_dump(mode="json"))
    missing = set(keys()) - {r[0] for r in rows}
    if missing:
        raise GenerationError(f"configuration keys missing from the generated reference: {sorted(missing)}")
    lines = [f"Generated from `decolle_brian.config.json_schema()` ({len(rows)} keys).", ""]
    lines += _table(rows)
    for name in DATASETS:
        params = params_table(name).model_json_schema()
        lines += ["", f"# `data.params` of `dataset = \"{name}\"`", ""]
        lines += _table(schema_rows(params, params, "data.params."))
    return "\n".join(lines) + "\n"


# ---- command line ----------------------------------------------------------------------------------------------
def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | default | choices | help |", "| --- | --- | --- | --- |"]
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its arguments here and nowhere public
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):  # noqa: SLF001
            continue
        name = ", ".join(action.option_strings) or action.dest
        if action.option_strings and action.nargs != 0:
            name += f" {action.metavar or action.dest.upper()}"
        default = "" if action.default in (None, False, argparse.SUPPRESS) else f"`{action.default}`"
        choices = ", ".join(f"`{c}`" for c in action.choices) if action.choices else ""
        rows.append(f"| `{_cell(name)}` | {default} | {choices} | {_cell(action.help or '')} |")
    return rows


def cli_page() -> str:
    from decolle_brian.cli import build_parser  # noqa: PLC0415

    parser = build_parser()
    lines = [f"Generated from `decolle_brian.cli.build_parser()`. {parser.description}", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    helps = {choice.dest: choice.help for choice in sub._choices_actions}  # noqa: SLF001
    for name, subparser in sub.choices.items():
        lines += [f"# `decolle-brian {name}`", "", helps.get(name) or "", ""]
        if subparser.description:
            lines += [subparser.description, ""]
        lines += ["```text", subparser.format_usage().strip(), "```", ""]
        lines += _argument_rows(subparser) + [""]
    return "\n".join(lines)


# ---- the model -------------------------------------------------------------------------------------------------
def equations_page(out: Path) -> str:
    lines = []
    for path in sorted((ROOT / "equations").glob("*.eq")):
        relative = Path("..", "..", "equations", path.name)  # from docs/model/, where the page that includes this is
        first = path.read_text().splitlines()[0].lstrip("# ").strip() if path.read_text().strip() else ""
        lines += [f"# `{path.name}`", "", first, "", f"```{{literalinclude}} {relative.as_posix()}",
                  ":language: text", "```", ""]
    return "\n".join(lines)


def rules_page() -> str:
    from decolle_brian.derivation import derive  # noqa: PLC0415
    from decolle_brian.emission import describe  # noqa: PLC0415
    from decolle_brian.names import LOSSES, SURROGATES  # noqa: PLC0415

    lines = []
    for loss in LOSSES:
        for surrogate in SURROGATES:
            lines += [f"# loss `{loss}`, surrogate `{surrogate}`", "",
                      f"`decolle-brian derive --loss {loss} --surrogate {surrogate}` prints:", "",
                      "```text", describe(derive(loss, surrogate), "sgd").rstrip(), "```", ""]
    return "\n".join(lines)


# ---- the public API --------------------------------------------------------------------------------------------
def exports_page() -> str:
    """``decolle_brian.__all__``: each name and the module that defines it (the package imports it on first use)."""
    import decolle_brian  # noqa: PLC0415

    lines = ["| `db.` name | defined in |", "| --- | --- |"]
    for name, module in decolle_brian._EXPORTS.items():  # noqa: SLF001 - the table __getattr__ reads
        defined = getattr(getattr(decolle_brian, name), "__module__", None) or module  # past a sub-package's re-export
        lines.append(f"| `{name}` | {{py:obj}}`{defined}.{name}` |")
    return "\n".join(lines) + "\n"


def _write(name: str, text: str) -> None:
    GENERATED.mkdir(exist_ok=True)
    path = GENERATED / name
    if not path.exists() or path.read_text() != text:  # unchanged pages keep their time: no needless rebuild
        path.write_text(text)


def generate(app) -> None:
    _write("configuration.md", configuration_page())
    _write("cli.md", cli_page())
    _write("equations.md", equations_page(GENERATED))
    _write("rules.md", rules_page())
    _write("exports.md", exports_page())


def setup(app):
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
