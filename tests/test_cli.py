"""The ``agentsession`` command line, through click's CliRunner (in process).

The demo runs with the offline model (no ``OPENAI_API_KEY``) and with the loopback
Responses server as a real OpenAI-compatible model; ``sessions``, ``show`` and ``clear``
run on databases filled through the store. No test touches the network.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from agents.model_settings import ModelSettings
from agents.models.interface import Model
from agents.testing import ScriptedModel
from click.testing import CliRunner, Result
from responses_server import ResponsesServer, echo_responder, user_texts

from agentsession import SQLiteStore, StoreMemory
from agentsession.cli import cli
from agentsession.cli.chat import Chat
from agentsession.cli.demo import FOURTH_TURN, TURNS
from agentsession.cli.models import PLACEHOLDER_KEY, BuiltModel, choose_model
from agentsession.cli.offline import OfflineModel, offline_reply

FIRST_QUESTION = TURNS[0]

TOOL_SESSION = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "sunny in Paris"},
    {
        "type": "message",
        "role": "assistant",
        "id": "msg_1",
        "status": "completed",
        "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}],
    },
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key, no server, no user database: every test states what it uses."""
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "AGENTSESSION_DB",
        "AGENTSESSION_MODEL",
        "OPENAI_DEFAULT_MODEL",
        "NO_COLOR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def assert_user_error(result: Result, *needles: str) -> None:
    """A user mistake: non-zero exit, a message naming it, and no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    """A database with two sessions: 'tools' (4 messages), then 'chat' (2), newest last."""
    path = tmp_path / "sessions.db"
    with SQLiteStore(path) as store:
        store.add_messages("tools", TOOL_SESSION)
        store.add_messages(
            "chat",
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        )
    yield path


# -- demo ------------------------------------------------------------------------------


def test_demo_offline_remembers_and_survives_a_fresh_memory(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    result = invoke("demo", "--db", str(path))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "offline demo model (OPENAI_API_KEY is not set)" in out
    for question in (*TURNS, FOURTH_TURN):
        assert f"User: {question}" in out
    assert out.count("Assistant: ") == 4 + 3  # four turns, and the stored transcript of three
    assert "no earlier messages, so this is where the session starts" in out
    # The fourth turn comes from a fresh memory object and still sees all six messages.
    fresh = out.split("as after a restart:")[1]
    assert f'6 earlier messages; you first asked "{FIRST_QUESTION}"' in fresh
    assert "session 'conversation_123' (6 messages)" in out
    with SQLiteStore(path) as store:
        messages = store.get_messages("conversation_123")
    assert len(messages) == 8
    assert messages[0] == {"role": "user", "content": FIRST_QUESTION}
    # The ledger: four runs, their figures the offline model's estimates.
    with SQLiteStore(path) as store:
        spent = store.usage("conversation_123")
    assert (spent.runs, spent.requests) == (4, 4)
    assert 0 < spent.input_tokens < spent.total_tokens
    assert (
        "What the runs cost, from the usage ledger (estimated by the offline model): "
        f"{spent.total_tokens} tokens ({spent.input_tokens} in, {spent.output_tokens} out) "
        "in 4 runs, 4 model calls"
    ) in out
    assert "agentsession usage conversation_123" in out
    assert "agentsession compact conversation_123 --keep-turns 1" in out
    # The hint works as printed: the three older turns are summarised and archived.
    assert (
        invoke("compact", "conversation_123", "--keep-turns", "1", "--db", str(path)).exit_code == 0
    )
    with SQLiteStore(path) as store:
        assert store.get_messages("conversation_123", include_archived=True) == messages
        assert len(store.get_messages("conversation_123")) == 3


def test_demo_is_repeatable_and_uses_the_default_database(tmp_path: Path) -> None:
    first = invoke("demo")
    again = invoke("demo")
    assert first.exit_code == again.exit_code == 0, again.output
    default = tmp_path / "xdg" / "agentsession" / "sessions.db"
    assert f"Database: {default}" in again.output
    assert "cleared of 8 messages from an earlier run" in again.output
    # Apart from that note, the second run prints exactly what the first did.
    assert first.output.splitlines()[2:] == again.output.splitlines()[2:]
    with SQLiteStore(default) as store:
        assert len(store.get_messages("conversation_123")) == 8


def test_demo_with_a_real_model_at_a_base_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy")
    monkeypatch.setenv("AGENTSESSION_DB", str(tmp_path / "env.db"))
    with ResponsesServer() as server:
        result = invoke("demo", "--base-url", server.base_url, "--model", "gpt-test")
        bodies = server.requests
        reported = sum(usage["total_tokens"] for usage in server.usages)
    assert result.exit_code == 0, result.output
    assert f"Model: gpt-test at {server.base_url} (responses API)" in result.output
    assert f"Assistant: echo: {TURNS[1]} (seen 2 user messages)" in result.output
    assert f"Assistant: echo: {FOURTH_TURN} (seen 4 user messages)" in result.output
    assert len(bodies) == 4
    assert user_texts(bodies[3]) == [*TURNS, FOURTH_TURN]  # the history reached the model
    assert bodies[0]["instructions"] == "Reply very concisely."
    assert f"the usage ledger: {reported} tokens" in result.output  # what the server reported
    assert (tmp_path / "env.db").exists()


def test_demo_reports_a_failing_model_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(body: dict[str, Any]) -> list[dict[str, Any]]:
        raise RuntimeError("model exploded")

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy")
    with ResponsesServer(broken) as server:
        result = invoke("demo", "--db", str(tmp_path / "d.db"), "--base-url", server.base_url)
    assert_user_error(result, "the model call failed", "model exploded")


def test_demo_refuses_a_named_model_without_a_key(tmp_path: Path) -> None:
    result = invoke("demo", "--db", str(tmp_path / "d.db"), "--model", "gpt-4o")
    assert_user_error(result, "'gpt-4o' needs OPENAI_API_KEY")
    assert result.exit_code == 2


# -- model choice ----------------------------------------------------------------------


def test_choose_model() -> None:
    assert choose_model(None, None, "responses", {}).offline
    assert choose_model("offline", None, "responses", {"OPENAI_API_KEY": "k"}).offline
    real = choose_model(None, None, "responses", {"OPENAI_API_KEY": "k"})
    assert (real.offline, real.api_key, real.base_url) == (False, "k", None)
    assert real.name  # the SDK's default model
    local = choose_model("llama3", "http://localhost:11434/v1", "chat_completions", {})
    assert (local.name, local.api_key, local.api) == ("llama3", PLACEHOLDER_KEY, "chat_completions")
    assert "llama3 at http://localhost:11434/v1 (chat completions API)" in local.describe()
    with pytest.raises(click.BadParameter, match="'nope' is not one of"):
        choose_model(None, None, "nope", {})


# -- the offline model -----------------------------------------------------------------


def test_offline_reply_reports_memory_deterministically() -> None:
    history: list[Any] = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": [{"type": "input_text", "text": "second question"}]},
        {"role": "assistant", "content": "another"},
        {"role": "user", "content": "What did I ask first?"},
    ]
    reply = offline_reply(history)
    assert reply == offline_reply(history)
    text = reply.content[0].text  # type: ignore[union-attr]
    assert text.startswith("Offline demo model here, reading this session's memory:")
    assert '4 earlier messages; you first asked "first question"' in text
    assert 'and just before this, "second question".' in text
    assert "no earlier messages" in offline_reply("hello").content[0].text  # type: ignore[union-attr]


def test_offline_model_streams_the_same_reply_it_returns() -> None:
    from agents.model_settings import ModelSettings
    from agents.models.interface import ModelTracing

    model = OfflineModel()
    args: Any = ("", [{"role": "user", "content": "hi there"}], ModelSettings(), [], None, [])
    kwargs: Any = {"previous_response_id": None, "conversation_id": None, "prompt": None}

    async def run() -> tuple[str, list[str], str]:
        whole = await model.get_response(*args, ModelTracing.DISABLED, **kwargs)
        deltas: list[str] = []
        final = ""
        async for event in model.stream_response(*args, ModelTracing.DISABLED, **kwargs):
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type == "response.completed":
                final = event.response.output[0].content[0].text  # type: ignore[union-attr]
        return whole.output[0].content[0].text, deltas, final  # type: ignore[union-attr]

    whole, deltas, final = asyncio.run(run())
    assert len(deltas) > 5
    assert "".join(deltas) == whole == final


def test_offline_model_reports_the_same_estimated_usage_streamed_or_not() -> None:
    from agents.model_settings import ModelSettings
    from agents.models.interface import ModelTracing

    from agentsession.window import approximate_tokens

    model = OfflineModel()
    question = {"role": "user", "content": "how much did this cost?"}
    args: Any = ("Be brief.", [question], ModelSettings(), [], None, [])
    kwargs: Any = {"previous_response_id": None, "conversation_id": None, "prompt": None}

    async def run() -> tuple[Any, Any]:
        whole = await model.get_response(*args, ModelTracing.DISABLED, **kwargs)
        final = None
        async for event in model.stream_response(*args, ModelTracing.DISABLED, **kwargs):
            if event.type == "response.completed":
                final = event.response.usage
        return whole.usage, final

    whole, streamed = asyncio.run(run())
    sent = approximate_tokens({"role": "system", "content": "Be brief."}) + approximate_tokens(
        question
    )
    assert (whole.requests, whole.input_tokens) == (1, sent)
    assert whole.output_tokens > 0
    assert whole.total_tokens == whole.input_tokens + whole.output_tokens
    assert streamed is not None
    assert (streamed.input_tokens, streamed.output_tokens, streamed.total_tokens) == (
        whole.input_tokens,
        whole.output_tokens,
        whole.total_tokens,
    )


# -- sessions ---------------------------------------------------------------------------


def test_sessions_table_newest_first(db: Path) -> None:
    result = invoke("sessions", "--db", str(db))
    assert result.exit_code == 0, result.output
    header, first, second = result.output.splitlines()
    assert header.split() == ["SESSION", "MESSAGES", "TOKENS", "CREATED", "LAST", "ACTIVE"]
    assert first.split()[:3] == ["chat", "2", "0"]  # stored without a run: no tokens
    assert second.split()[:3] == ["tools", "4", "0"]


def test_sessions_json(db: Path) -> None:
    result = invoke("sessions", "--db", str(db), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [(s["session_id"], s["message_count"]) for s in data] == [("chat", 2), ("tools", 4)]
    assert data[0]["updated_at"] >= data[1]["updated_at"]
    assert data[0]["created_at"].endswith("+00:00")


def test_sessions_of_an_empty_database(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "empty.db").close()
    assert invoke("sessions", "--db", str(tmp_path / "empty.db")).output.startswith("No sessions")
    assert invoke("sessions", "--db", str(tmp_path / "empty.db"), "--json").output.strip() == "[]"


# -- show -------------------------------------------------------------------------------


def test_show_labels_roles_and_tool_calls(db: Path) -> None:
    result = invoke("show", "tools", "--db", str(db))
    assert result.exit_code == 0, result.output
    lines = [line.split(None, 1)[1] for line in result.output.splitlines()[1:]]
    assert lines == [
        "User: Weather in Paris?",
        'Tool call: get_weather({"city": "Paris"})',
        "Tool result: sunny in Paris",
        "Assistant: It is sunny.",
    ]
    assert "Session 'tools'" in result.output and "4 messages" in result.output


def test_show_json_is_the_stored_messages(db: Path) -> None:
    result = invoke("show", "tools", "--db", str(db), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == TOOL_SESSION


def test_show_unknown_session(db: Path) -> None:
    assert_user_error(invoke("show", "nope", "--db", str(db)), "no session 'nope'")


# -- clear ------------------------------------------------------------------------------


def session_ids(path: Path) -> list[str]:
    with SQLiteStore(path) as store:
        return [info.session_id for info in store.list_sessions()]


def test_clear_declined_keeps_the_session(db: Path) -> None:
    result = invoke("clear", "chat", "--db", str(db), input="n\n")
    assert "Delete session 'chat' (2 messages)" in result.output
    assert result.exit_code == 1
    assert session_ids(db) == ["chat", "tools"]


def test_clear_confirmed_deletes_the_session(db: Path) -> None:
    result = invoke("clear", "chat", "--db", str(db), input="y\n")
    assert result.exit_code == 0, result.output
    assert "Deleted session 'chat' (2 messages)." in result.output
    assert session_ids(db) == ["tools"]


def test_clear_yes_does_not_ask(db: Path) -> None:
    result = invoke("clear", "tools", "--db", str(db), "--yes")
    assert result.exit_code == 0, result.output
    assert "Delete session" not in result.output
    assert session_ids(db) == ["chat"]
    assert_user_error(invoke("clear", "tools", "--db", str(db), "--yes"), "no session 'tools'")


# -- bad databases ------------------------------------------------------------------------

INSPECTING = [("sessions",), ("show", "chat"), ("clear", "chat", "--yes")]


@pytest.mark.parametrize("command", INSPECTING, ids=lambda c: c[0])
def test_a_missing_database_is_reported_not_created(tmp_path: Path, command: tuple[str]) -> None:
    path = tmp_path / "missing.db"
    assert_user_error(invoke(*command, "--db", str(path)), f"no database at {path}")
    assert not path.exists()
    default = tmp_path / "xdg" / "agentsession" / "sessions.db"
    assert_user_error(invoke(*command), f"no database at {default}")
    assert not default.parent.exists()


@pytest.mark.parametrize("command", [*INSPECTING, ("demo",)], ids=lambda c: c[0])
def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path, command: tuple[str]) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some notes\n" * 50)
    assert_user_error(invoke(*command, "--db", str(path)), "is not an agentsession database")
    assert path.read_text() == "just some notes\n" * 50


@pytest.mark.parametrize("command", [*INSPECTING, ("demo",)], ids=lambda c: c[0])
def test_another_apps_sqlite_database_is_refused_untouched(
    tmp_path: Path, command: tuple[str]
) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
    conn.close()
    result = invoke(*command, "--db", str(path))
    assert_user_error(result, f"{path} is not an agentsession database")
    with sqlite3.connect(path) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
    conn.close()
    assert tables == ["people"]


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert_user_error(invoke("sessions", "--db", str(tmp_path)), "is a directory")


def test_an_empty_session_id_is_refused(db: Path) -> None:
    assert_user_error(invoke("show", "", "--db", str(db)), "session id cannot be empty")


# -- chat turns ---------------------------------------------------------------------------

EARLIER_TURN = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
OTHER_TURN = [
    {"role": "user", "content": "from the other process"},
    {"role": "assistant", "content": "its reply"},
]


class _NextRunStore(SQLiteStore):
    """Another process's run waits for the session: the moment the chat's run gives the
    lease back, that run takes it and stores its turn."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.other = SQLiteStore(path)
        self.waiting = True

    def _unlock(self, session_id: str, owner: str) -> None:
        # The hook both unlock() and write_and_unlock() give the lease back through.
        super()._unlock(session_id, owner)
        if self.waiting:
            self.waiting = False
            assert self.other.try_lock(session_id, "other-process", 30.0)
            self.other.add_messages(session_id, OTHER_TURN)
            self.other.unlock(session_id, "other-process")

    def close(self) -> None:
        self.other.close()
        super().close()


class _StalledModel(Model):
    """A model whose reply never comes; ``started`` is set once it is asked."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        self.started.set()
        await asyncio.Event().wait()
        yield  # pragma: no cover - never reached


def _chat(path: Path, model: Model) -> Chat:
    built = BuiltModel(model=model, settings=ModelSettings(), tracing_disabled=True)
    return Chat(StoreMemory(_NextRunStore(path)), "s", built, tools=False)


@pytest.mark.parametrize("ending", ["failed", "interrupted"])
def test_a_chat_turn_that_does_not_complete_leaves_other_runs_turns_alone(
    tmp_path: Path, ending: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The turn is rolled back inside its run's lease, so a run of another process that
    # stores its turn as soon as the lease is free keeps it.
    path = tmp_path / "chat.db"
    with SQLiteStore(path) as store:
        store.add_messages("s", EARLIER_TURN)
    stalled = _StalledModel()
    model = ScriptedModel([RuntimeError("the model exploded")]) if ending == "failed" else stalled
    chat = _chat(path, model)

    async def turn() -> str:
        task = asyncio.ensure_future(chat.turn("my question"))
        if ending == "interrupted":  # Ctrl-C in the middle of the reply
            await stalled.started.wait()
            task.cancel()
        return await task

    try:
        assert asyncio.run(turn()) == ending
    finally:
        chat.memory.close()
    assert "this turn was not stored" in capsys.readouterr().out
    with SQLiteStore(path) as store:
        assert store.get_messages("s") == EARLIER_TURN + OTHER_TURN


def test_chat_undo_removes_the_last_turn_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "chat.db"
    with SQLiteStore(path) as store:
        store.add_messages("s", EARLIER_TURN + TOOL_SESSION)
    chat = Chat(
        StoreMemory(SQLiteStore(path)),
        "s",
        BuiltModel(model=ScriptedModel([]), settings=ModelSettings(), tracing_disabled=True),
        tools=False,
    )
    try:
        chat.undo()
        assert "(removed the last turn: 4 messages)" in capsys.readouterr().out
        assert chat.store.get_messages("s") == EARLIER_TURN
        chat.undo()
        chat.undo()
        out = capsys.readouterr().out
        assert "(removed the last turn: 2 messages)" in out and "(nothing to undo)" in out
        assert chat.store.get_messages("s") == []
    finally:
        chat.memory.close()


# -- the entry points -------------------------------------------------------------------


def test_python_dash_m_and_light_import() -> None:
    # One interpreter start for both checks: importing agentsession leaves the command
    # line unloaded, then the package runs as ``python -m agentsession`` does (runpy).
    script = (
        "import runpy, sys, agentsession\n"
        "print('cli loaded:', 'agentsession.cli' in sys.modules)\n"
        "sys.argv = ['agentsession', '--help']\n"
        "runpy.run_module('agentsession', run_name='__main__', alter_sys=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cli loaded: False\nUsage: agentsession ")
    for command in ("demo", "chat", "sessions", "show", "clear"):
        assert f"  {command} " in result.stdout


def test_echo_responder_is_what_the_demo_test_expects() -> None:
    # Guards test_demo_with_a_real_model_at_a_base_url against a changed fake server.
    body = {"input": [{"role": "user", "content": "x"}]}
    assert echo_responder(body)[0]["content"][0]["text"] == "echo: x (seen 1 user messages)"


# -- control characters ------------------------------------------------------------------

#: Sets the terminal's title, then a NUL, a bell and a right-to-left override.
HOSTILE = "\x1b]0;owned\x07\x00\u202e"


@pytest.mark.parametrize(
    "command",
    [["sessions"], ["show", "hostile"], ["search", "hello"], ["rewind", "hostile", "--yes"]],
)
def test_stored_control_characters_are_printed_escaped(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "sessions.db"
    with SQLiteStore(path) as store:
        store.add_messages(f"id{HOSTILE}", [{"role": "user", "content": f"hello{HOSTILE}"}])
        store.add_messages("hostile", [{"role": "user", "content": f"hello{HOSTILE}\nnext"}])
    result = invoke(*command, "--db", str(path))
    assert result.exit_code == 0, result.output
    for character in "\x1b\x07\x00\u202e":
        assert character not in result.output
    assert "\\x1b]0;owned\\x07\\x00\\u202e" in result.output
