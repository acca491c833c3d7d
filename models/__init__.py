"""Models, found by name: ``--model foo`` loads class ``FooModel`` from ``models/foo_model.py``.

A new model is one new file; it declares its own flags in ``modify_commandline_options``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from models.base_model import BaseModel
from util.registry import find_class, registered_names
from util.runtime import Runtime

OptionSetter = Callable[[argparse.ArgumentParser, bool], argparse.ArgumentParser]


def model_names() -> list[str]:
    """Every valid ``--model``: the files ``models/<name>_model.py``."""
    return registered_names(Path(__file__).parent, "model")


def find_model_class(name: str) -> type[BaseModel]:
    """The model class for ``name``; an :class:`OptionError` listing the valid names otherwise."""
    return find_class(__name__, Path(__file__).parent, "model", name, BaseModel, "--model")


def get_option_setter(name: str) -> OptionSetter:
    """The ``modify_commandline_options`` of model ``name``."""
    return find_model_class(name).modify_commandline_options


def create_model(opt: argparse.Namespace, runtime: Runtime | None = None) -> BaseModel:
    """Build the model chosen by ``--model`` (call its ``setup()`` next), running on ``runtime``
    (by default the one ``opt`` describes)."""
    return find_model_class(opt.model)(opt, runtime)
