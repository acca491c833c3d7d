"""Find classes by name in a package: ``<package>/<name>_<kind>.py`` defines ``<Name><Kind>``.

Both factories (``--model`` and ``--dataset_mode``) use this, so adding a model or dataset is
adding one file.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from util.errors import OptionError


def registered_names(package_dir: Path, kind: str) -> list[str]:
    """Names ``foo`` of the files ``<package_dir>/foo_<kind>.py`` (``base_<kind>.py`` excluded)."""
    suffix = f"_{kind}.py"
    return sorted(path.name[: -len(suffix)] for path in package_dir.glob(f"*{suffix}") if path.name != f"base{suffix}")


def find_class(package: str, package_dir: Path, kind: str, name: str, base: type, flag: str) -> type:
    """The subclass of ``base`` named like ``name`` + ``kind`` (case and underscores ignored).

    An unknown name raises an :class:`OptionError` that lists the valid ones.
    """
    valid = registered_names(package_dir, kind)
    if name not in valid:
        raise OptionError(f"unknown {flag} {name!r}; valid values: {', '.join(valid)}")
    module = importlib.import_module(f"{package}.{name}_{kind}")
    wanted = (name + kind).replace("_", "").lower()
    for attribute in vars(module).values():
        if isinstance(attribute, type) and issubclass(attribute, base) and attribute.__name__.lower() == wanted:
            return attribute
    raise OptionError(f"{package}/{name}_{kind}.py defines no {base.__name__} subclass named like {wanted!r}")
