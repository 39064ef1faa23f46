"""The Django example on Django's live server (a threaded WSGI server), many sessions at once.

The project's own settings module is used; ``AGENTSESSION`` is overridden to a temporary
file the way a user's tests would, through ``override_settings``.
"""

from __future__ import annotations

import functools
import json
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests.integrations._http import (
    TURNS,
    chat_turn,
    check_histories,
    converse_concurrently,
    post_json,
    stored_history,
)
from tests.integrations.conftest import EXAMPLES, ConcurrencyProbe
from tests.responses_server import ResponsesServer, echo_responder

pytest.importorskip("django")

from django.test import LiveServerTestCase  # noqa: E402

PROJECT = EXAMPLES / "django_app"


@pytest.fixture(scope="module", autouse=True)
def _django_project() -> Iterator[None]:
    """Load the example project's settings, as ``manage.py`` does."""
    import django

    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(PROJECT))
        mp.setenv("DJANGO_SETTINGS_MODULE", "chatsite.settings")
        django.setup()
        yield


class ChatLiveServerTest(LiveServerTestCase):
    """``LiveServerTestCase`` serves the project's URLs on a real socket, one thread per
    request; the views' ``Runner.run_sync`` calls the loopback model over HTTP."""

    databases: ClassVar[set[str]] = set()  # the example keeps nothing in Django's database
    host = "127.0.0.1"
    model: ResponsesServer
    tmp_path: Path

    @pytest.fixture(autouse=True)
    def _model(self, model_server: ResponsesServer, tmp_path: Path) -> Iterator[None]:
        # The conftest's loopback server, set as this process's OPENAI_BASE_URL.
        self.model, self.tmp_path = model_server, tmp_path
        probe = ConcurrencyProbe()
        model_server.responder = probe
        self.probe = probe
        yield
        model_server.responder = echo_responder

    def test_concurrent_sessions_keep_their_own_history(self) -> None:
        database = self.tmp_path / "conversations.db"
        with self.settings(AGENTSESSION={"DATABASE": str(database)}):
            from chatsite.memory import get_memory

            session_ids = [f"django-user-{n}" for n in range(24)]

            base = self.live_server_url
            replies = converse_concurrently(
                session_ids, lambda session_id, message, turn: chat_turn(base, session_id, message)
            )
            check_histories(self.model, replies, functools.partial(stored_history, base))
            assert self.probe.peak > 1, "the live server never ran two turns at once"
            # The memory came from the settings: its file holds every session.
            assert Path(get_memory().store.path) == database
            sessions = {
                info.session_id: info.message_count for info in get_memory().store.list_sessions()
            }
            assert sessions == dict.fromkeys(session_ids, 2 * TURNS)

    def test_bad_request_is_refused(self) -> None:
        with pytest.raises(urllib.error.HTTPError) as refused:
            post_json(f"{self.live_server_url}/chat", {"session_id": 7, "message": "hi"})
        assert refused.value.code == 400
        assert "error" in json.loads(refused.value.read())


def test_settings_configure_the_memory(tmp_path: Path) -> None:
    """``AGENTSESSION`` decides the file and options; a change of settings rebuilds it."""
    from chatsite.memory import get_memory
    from django.test import override_settings

    first, second = tmp_path / "first.db", tmp_path / "second.db"
    with override_settings(AGENTSESSION={"DATABASE": str(first), "SYNCHRONOUS": "NORMAL"}):
        memory = get_memory()
        assert get_memory() is memory
        assert memory.store.path == first and memory.store.synchronous == "NORMAL"
        memory.store.add_messages("s", [{"role": "user", "content": "hi"}])
    with override_settings(AGENTSESSION={"DATABASE": str(second)}):
        assert get_memory() is not memory
        assert get_memory().store.get_messages("s") == []
    assert first.exists() and second.exists()
