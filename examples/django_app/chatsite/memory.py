"""The process's session memory, built once from ``settings.AGENTSESSION``.

Every request thread (and every run) of the process shares the one memory; worker
processes each build their own on the same file. ``override_settings(AGENTSESSION=...)``
in a test closes it, and the next ``get_memory()`` builds one from the new settings.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from agentsession import SQLiteSessionMemory

_lock = threading.Lock()
_memory: SQLiteSessionMemory | None = None


def get_memory() -> SQLiteSessionMemory:
    """Return the process's memory, creating it from ``settings.AGENTSESSION`` once.

    ``AGENTSESSION`` keys: ``DATABASE`` (the SQLite file, required), ``BUSY_TIMEOUT``
    (seconds, default 5) and ``SYNCHRONOUS`` (``"FULL"``, the default, or ``"NORMAL"``).
    """
    global _memory
    with _lock:
        if _memory is None:
            config: dict[str, Any] = settings.AGENTSESSION
            _memory = SQLiteSessionMemory(
                config["DATABASE"],
                busy_timeout=config.get("BUSY_TIMEOUT", 5.0),
                synchronous=config.get("SYNCHRONOUS", "FULL"),
            )
        return _memory


def close_memory() -> None:
    """Close the process's memory, if one was built; the next use builds a new one."""
    global _memory
    with _lock:
        memory, _memory = _memory, None
    if memory is not None:
        memory.close()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "AGENTSESSION":
        close_memory()
