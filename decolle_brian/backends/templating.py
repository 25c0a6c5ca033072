"""The templater of this package's C++ standalone code objects: Brian's, plus ``backends/templates``."""

from __future__ import annotations

from brian2.devices.cpp_standalone.codeobject import CPPStandaloneCodeObject


def package_templater(**env_globals):
    """Brian's C++ standalone templater that also finds this package's templates, with ``env_globals`` (the Python
    helpers a template calls) added to its Jinja globals."""
    return CPPStandaloneCodeObject.templater.derive("decolle_brian.backends", env_globals=env_globals)
