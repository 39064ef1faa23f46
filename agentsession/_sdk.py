"""Every touch-point with the Agents SDK's private or undocumented surface, in one place.

agentsession relies on a few names the SDK does not export (they sit in ``_`` modules or
outside every ``__all__``) and on two attributes of ``RunResultStreaming`` that are not part
of its documented API. The rest of the package imports those names from here, and
``tests/test_sdk_surface.py`` checks that each still has the shape used, so an SDK release
that moves one fails that test (or this import) with a message naming it, and this file is
the one place to adapt.

What is relied on, and where:

* ``get_default_openai_client`` / ``get_default_openai_key`` (``agents.models._openai_shared``):
  ``_provider.py`` reads what ``agents.set_default_openai_client`` / ``_key`` installed.
* ``coerce_session_settings`` / ``resolve_session_limit`` (``agents.memory.session_settings``):
  ``session.py`` normalises ``session_settings`` exactly as the SDK's own sessions do.
  ``SessionSettings`` itself is public; it is re-exported so the settings come from one place.
* ``TResponseOutputItem`` / ``TResponseStreamEvent`` (``agents.items``, in no ``__all__``):
  the offline model's annotations.
* ``RunResultStreaming.stream_events`` is replaced on the instance and
  ``RunResultStreaming.run_loop_task`` (the task running a streamed run) is watched, by
  ``_streamed.py`` (to end the run's guard) and, through ``run_task``, by the chat.
* ``RunState._context`` (the run context a resumed run continues with, usage included)
  is read by ``_ledger.py`` through ``resumed_context``, to record only what the resumed
  part of a run spent.

Public SDK API (``agents.Agent``, ``agents.Runner``, ``agents.RunConfig``,
``agents.memory.Session``, ``agents.testing``...) is imported where it is used.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from agents import RunResultStreaming
from agents.memory import SessionSettings

__all__ = (
    "RunResultStreaming",
    "SessionSettings",
    "TResponseOutputItem",
    "TResponseStreamEvent",
    "coerce_session_settings",
    "get_default_openai_client",
    "get_default_openai_key",
    "resolve_session_limit",
    "resumed_context",
    "run_task",
    "sdk_version",
)


def sdk_version() -> str:
    """The installed openai-agents version, for messages about a moved name."""
    try:
        return version("openai-agents")
    except PackageNotFoundError:  # e.g. a source checkout on sys.path
        return "unknown"


try:
    from agents.items import TResponseOutputItem, TResponseStreamEvent
    from agents.memory.session_settings import coerce_session_settings, resolve_session_limit
    from agents.models._openai_shared import get_default_openai_client, get_default_openai_key
except ImportError as exc:  # only with an SDK release that moved one of them
    raise ImportError(
        f"openai-agents {sdk_version()} no longer has a name agentsession relies on ({exc}); "
        "agentsession/_sdk.py is the one place to adapt"
    ) from exc


def run_task(result: RunResultStreaming) -> asyncio.Task[Any] | None:
    """The task running a streamed run (``None`` if the SDK has not started one).

    The SDK keeps it in ``RunResultStreaming.run_loop_task``, which it does not document.
    """
    return result.run_loop_task


def resumed_context(state: Any) -> Any:
    """The ``RunContextWrapper`` a resumed run (``input`` a ``RunState``) continues with,
    or ``None`` when the state holds none yet (the SDK keeps it in ``RunState._context``).
    """
    return getattr(state, "_context", None)
