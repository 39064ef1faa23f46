"""Optional dependencies: import them, or say which extra installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from .exceptions import MissingDependencyError

__all__ = ("require",)


def require(module: str, extra: str, needed_by: str) -> ModuleType:
    """Import ``module``, or raise ``MissingDependencyError`` with the ``pip install`` hint.

    Args:
        module: the module to import (``"psycopg"``).
        extra: the agentsession extra that installs it (``"postgres"``).
        needed_by: what needs it, for the message (``"PostgresStore"``).

    Raises:
        MissingDependencyError: the module is not installed; ``__cause__`` is the
            ``ImportError``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{needed_by} needs the {module!r} package, which is not installed: "
            f"pip install 'agentsession[{extra}]'"
        ) from exc
