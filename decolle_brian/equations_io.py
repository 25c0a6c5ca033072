"""Load the model files of ``equations/``.

The files are the model (see ``equations/README.md``); this module only reads them. Each file is split in
sections ``[name]``; a section is Brian2 equation text or Brian2 code, kept verbatim (comments included,
Brian2 accepts them).
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

_SECTION = re.compile(r"^\[(\w+)\]\s*$")


def shipped_folder(package: str, folder: str, marker: str) -> Path:
    """A data folder shipped as the sub-package ``package`` (``setup.py``'s ``package_dir``), or, in a source
    tree that is not installed, the top-level ``folder`` of the checkout; ``marker`` is a file it must hold."""
    try:
        path = Path(str(resources.files(package)))
        if (path / marker).is_file():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / folder


def equations_dir() -> Path:
    """Folder holding the ``.eq`` files: the installed ``decolle_brian.equations`` or the source tree."""
    path = shipped_folder("decolle_brian.equations", "equations", "lif.eq")
    if not (path / "lif.eq").is_file():
        raise FileNotFoundError(
            f"The model equations (lif.eq, ...) were found neither in the installed package nor in {path}; "
            "reinstall decolle-brian (pip install .)."
        )
    return path


@functools.cache
def load_model(name: str) -> dict[str, str]:
    """Sections of ``equations/<name>.eq`` as a dict ``section -> text`` (comments stripped).

    Parameters
    ----------
    name : str
        File stem, e.g. ``"lif"``.
    """
    path = equations_dir() / f"{name}.eq"
    if not path.is_file():
        known = sorted(p.stem for p in equations_dir().glob("*.eq"))
        raise ValueError(f"No model file '{name}.eq' in {path.parent}; known: {known}")
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        match = _SECTION.match(line)
        if match:
            current = sections.setdefault(match.group(1), [])
        elif current is not None and line.split("#", 1)[0].strip():
            # comments are for the reader; Brian would split code statements at a ';' inside one
            current.append(line.split("#", 1)[0].rstrip())
    return {key: "\n".join(lines) for key, lines in sections.items()}


def statements(code: str) -> list[tuple[str, str, str]]:
    """Split Brian2 code into ``(target, operator, expression)`` triples (comments stripped)."""
    result = []
    for line in code.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"^(\w+)\s*(=|\+=|-=|\*=|/=)\s*(.+)$", line)
        if not match:
            raise ValueError(f"Cannot parse model statement '{line}'")
        result.append(match.groups())
    return result
