"""Finding a workflow from a string: `package.module:attribute` or `path/to/file.py:attribute`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._workflow import Workflow


def load_object(target: str) -> Any:
    """Import `target`; the attribute may be dotted (`module:Class.attr`)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(
            f"{target!r} is not an import string; use 'package.module:attribute' or "
            "'path/to/file.py:attribute'"
        )
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().resolve()
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None or not path.exists():
                raise ConfigurationError(f"no Python file at {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r} for {target!r}: {exc}") from exc
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(f"{module_name!r} has no attribute {attribute!r}") from None
    return obj


def load_workflow(target: object) -> Workflow:
    """A `Workflow` from itself, an import string, or a function returning one."""
    from ._workflow import Workflow  # at call time: the workflow module may import this one

    obj = load_object(target) if isinstance(target, str) else target
    if callable(obj) and not isinstance(obj, Workflow):
        obj = obj()
    if not isinstance(obj, Workflow):
        raise ConfigurationError(
            f"{target!r} is a {type(obj).__name__}, not a Workflow (or a function returning one)"
        )
    return obj
