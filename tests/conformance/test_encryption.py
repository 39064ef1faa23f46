"""Encryption at rest, on every engine: what an encrypted store promises.

Each test opens stores on one location (a SQLite file, a PostgreSQL schema, a Redis key
prefix) with ``Engine.open``, so it can reopen it with other keys, and reads or alters
what is stored there with the engine's own driver (``raw_text``, ``raw_row``,
``write_row``), never through agentsession.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import sqlite3
import stat
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from agents.testing import ScriptedModel, assistant_message

from agentsession import (
    Agent,
    DecryptionError,
    Encryption,
    NotSupportedError,
    RunConfig,
    Runner,
    SchemaError,
    SQLiteKeyFile,
    SQLiteSessionMemory,
    SQLiteStore,
    StoreMemory,
    generate_key,
)
from agentsession.stores.sqlite.schema import MESSAGES, SESSIONS

MARKER = "zebra-7731-marker"

KINDS = ["sqlite", "postgres", "redis"]

#: A wrapped data key, as ``Encryption`` writes it to a key store.
WRAPPED = re.compile(r"1\.[0-9a-f]{16}\.[0-9a-f]{16}\.")

OLD = generate_key()
NEW = generate_key()
OTHER = generate_key()


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def reply(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def _flip(text: str) -> str:
    """``text`` (``as1:`` + base64) with one base64 character of the ciphertext changed."""
    at = len(text) - 30  # inside the ciphertext, before any padding
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


class Engine:
    """One location on one engine, opened as often as a test likes."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.stores: list[Any] = []
        self.name = f"enc_{uuid.uuid4().hex[:12]}"
        self.path = tmp_path / "sessions.db"
        #: More clean-up, run first.
        self.extra: list[Any] = []

    def open(self, encryption: Encryption | None = None) -> Any:
        if self.kind == "sqlite":
            store: Any = SQLiteStore(self.path, encryption=encryption)
        elif self.kind == "postgres":
            from agentsession.stores.postgres import PostgresStore
            from tests import services

            store = PostgresStore(services.postgres_dsn(), schema=self.name, encryption=encryption)
        else:
            from agentsession.stores.redis import RedisStore
            from tests import services

            store = RedisStore(services.redis_url(), prefix=self.name, encryption=encryption)
        self.stores.append(store)
        return store

    def cleanup(self) -> None:
        for step in self.extra:
            step()
        for store in self.stores:
            store.close()
        if self.kind == "postgres":
            from tests import services

            services.drop_postgres_schema(self.name)
        elif self.kind == "redis":
            from tests import services

            services.drop_redis_prefix(self.name)

    # -- the stored data, through the engine's own driver ------------------------------------

    def raw_text(self) -> str:
        """Everything stored, as text: files (with the key file), rows, values."""
        if self.kind == "sqlite":
            files = [p for p in self.path.parent.iterdir() if p.name.startswith(self.path.name)]
            return "".join(p.read_bytes().decode("latin-1") for p in files)
        if self.kind == "postgres":
            import psycopg

            from tests import services

            with psycopg.connect(services.POSTGRES_DSN) as conn:
                tables = conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (self.name,)
                ).fetchall()
                return "\n".join(
                    row[0]
                    for (table,) in tables
                    for row in conn.execute(f'SELECT t::text FROM "{self.name}".{table} t')
                )
        import redis

        from tests import services

        client = redis.Redis.from_url(services.REDIS_URL)
        try:
            out = []
            for key in client.scan_iter(match=f"{self.name}*"):
                kind = client.type(key)
                if kind == b"list":
                    out += client.lrange(key, 0, -1)
                elif kind == b"hash":
                    out += [k + b" " + v for k, v in client.hgetall(key).items()]
                elif kind == b"zset":
                    out += client.zrange(key, 0, -1)
                else:
                    out.append(client.get(key) or b"")
            return b"\n".join(out).decode("utf-8", "replace")
        finally:
            client.close()

    def raw_row(self, session_id: str, seq: int) -> str:
        """The stored text of the session's message ``seq`` (1-based)."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.path) as conn:
                (text,) = conn.execute(
                    f"SELECT m.message FROM {MESSAGES} m JOIN {SESSIONS} s ON m.session = s.id "
                    "WHERE s.session_id = ? AND m.seq = ?",
                    (session_id, seq),
                ).fetchone()
            return str(text)
        if self.kind == "postgres":
            import psycopg

            from tests import services

            with psycopg.connect(services.POSTGRES_DSN) as conn:
                row = conn.execute(
                    f'SELECT m.message FROM "{self.name}".agentsession_messages m JOIN '
                    f'"{self.name}".agentsession_sessions s ON m.session = s.id '
                    "WHERE s.session_id = %s AND m.seq = %s",
                    (session_id, seq),
                ).fetchone()
            assert row is not None
            return str(row[0])
        import redis

        from agentsession.stores.redis.core import session_keys
        from tests import services

        client = redis.Redis.from_url(services.REDIS_URL)
        try:
            item = client.lindex(session_keys(self.name, session_id)[0], seq - 1)
        finally:
            client.close()
        return item.decode().split(" ", 1)[1]

    def write_row(self, session_id: str, seq: int, text: str) -> None:
        """Overwrite the stored text of the session's message ``seq``."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.path) as conn:
                conn.execute(
                    f"UPDATE {MESSAGES} SET message = ? WHERE seq = ? AND session = "
                    f"(SELECT id FROM {SESSIONS} WHERE session_id = ?)",
                    (text, seq, session_id),
                )
            return
        if self.kind == "postgres":
            import psycopg

            from tests import services

            with psycopg.connect(services.POSTGRES_DSN) as conn:
                conn.execute(
                    f'UPDATE "{self.name}".agentsession_messages SET message = %s WHERE '
                    f'seq = %s AND session = (SELECT id FROM "{self.name}".agentsession_sessions '
                    "WHERE session_id = %s)",
                    (text, seq, session_id),
                )
            return
        import redis

        from agentsession.stores.redis.core import session_keys
        from tests import services

        client = redis.Redis.from_url(services.REDIS_URL)
        try:
            key = session_keys(self.name, session_id)[0]
            created = client.lindex(key, seq - 1).decode().split(" ", 1)[0]
            client.lset(key, seq - 1, f"{created} {text}")
        finally:
            client.close()


@pytest.fixture(params=KINDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    found = Engine(request.param, tmp_path)
    yield found
    found.cleanup()


def _fill(store: Any) -> None:
    store.add_messages("s1", [user(f"{MARKER} one"), reply("two")])
    store.add_messages("s1", [user("three"), reply(f"four {MARKER}")])
    store.set_metadata("s1", {"user": MARKER, "tier": 2})
    store.add_messages("s2", [user("other")])


# -- round trip -------------------------------------------------------------------------------


def test_every_read_and_write_round_trips(engine: Engine) -> None:
    store = engine.open(Encryption(OLD))
    _fill(store)
    whole = [user(f"{MARKER} one"), reply("two"), user("three"), reply(f"four {MARKER}")]
    assert store.get_messages("s1") == whole
    assert store.get_messages("s1", 1) == [reply(f"four {MARKER}")]  # rows 3 and 4 only
    assert store.session_info("s1").metadata == {"user": MARKER, "tier": 2}
    assert store.session_info("s1").message_count == 4
    assert store.update_metadata("s1", {"tier": 3}, remove=["user"]) == {"tier": 3}
    assert [s.session_id for s in store.list_sessions(metadata={"tier": 3})] == ["s1"]
    page = store.list_sessions_page(limit=1, metadata={"tier": 3})
    assert [s.session_id for s in page.sessions] == ["s1"] and page.next_cursor is None
    assert store.pop_message("s1") == reply(f"four {MARKER}")
    assert store.rewind("s1") == [user("three")]
    assert store.truncate("s1", 1) == [reply("two")]
    assert store.fork("s1", "copy") == 1
    assert store.get_messages("copy") == [user(f"{MARKER} one")]
    assert store.session_info("copy").metadata == {"tier": 3}


def test_the_stored_data_holds_no_plaintext(engine: Engine) -> None:
    store = engine.open(Encryption(OLD))
    _fill(store)
    store.fork("s1", "copy")
    assert MARKER in json.dumps(store.get_messages("copy"))
    assert "tier" in engine.raw_text()  # metadata keys stay readable, for listing
    assert MARKER not in engine.raw_text()


def test_a_plain_store_runs_its_own_hooks(engine: Engine) -> None:
    # Without encryption nothing stands between StoreBase and the engine: not one call.
    store = engine.open()
    store.add_messages("s1", [user(MARKER)])
    assert not {"_append", "_newest_rows", "_all_rows"} & set(vars(store))
    assert store.key_store is None
    assert MARKER in engine.raw_text()


def test_a_runs_two_calls_are_encrypted_too(engine: Engine) -> None:
    store = engine.open(Encryption(OLD))
    _fill(store)
    assert store.lock_and_read("s1", "run-1", 5.0, 1) == [reply(f"four {MARKER}")]
    store.write_and_unlock("s1", "run-1", [user(f"five {MARKER}")])
    assert store.try_lock("s1", "run-2", 5.0)  # the lease was given back
    store.unlock("s1", "run-2")
    assert store.get_messages("s1", 1) == [user(f"five {MARKER}")]
    assert MARKER not in engine.raw_text()
    stranger = engine.open(Encryption(OTHER))
    with pytest.raises(DecryptionError):
        stranger.lock_and_read("s1", "run-3", 5.0)
    with pytest.raises(DecryptionError):
        stranger.write_and_unlock("s1", "run-3", [user("more")])
    assert store.try_lock("s1", "run-4", 5.0)  # neither failure kept the lease
    assert store.message_count("s1") == 5


def test_a_runs_record_rides_with_encrypted_messages(engine: Engine) -> None:
    # The usage ledger's path (add_messages / write_and_unlock with run=) seals the
    # messages as the plain path does; the record (no message content) is kept as it is.
    from datetime import datetime, timezone

    from agentsession import RunRecord

    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    store = engine.open(Encryption(OLD))
    one = RunRecord("r1", "s1", at, at, "Agent", "m", 1, 10, 5, 15, 0, 0, 1, "completed")
    store.add_messages("s1", [user(f"one {MARKER}")], run=one)
    assert store.try_lock("s1", "run-2", 5.0)
    two = RunRecord("r2", "s1", at, at, "Agent", "m", 1, 20, 5, 25, 0, 0, 1, "completed")
    store.write_and_unlock("s1", "run-2", [user(f"two {MARKER}")], run=two)
    assert store.try_lock("s1", "run-3", 5.0)  # the lease was given back
    store.unlock("s1", "run-3")
    assert store.get_messages("s1") == [user(f"one {MARKER}"), user(f"two {MARKER}")]
    assert store.runs("s1") == [two, one]
    assert store.usage("s1").total_tokens == 40
    assert MARKER not in engine.raw_text()


# -- errors -----------------------------------------------------------------------------------


def test_a_wrong_master_key_raises_and_returns_nothing(engine: Engine) -> None:
    _fill(engine.open(Encryption(OLD)))
    store = engine.open(Encryption(OTHER))
    for read in (
        lambda: store.get_messages("s1"),
        lambda: store.get_messages("s1", 1),
        lambda: store.session_info("s1"),
        lambda: store.list_sessions(),
        lambda: store.pop_message("s1"),
    ):
        with pytest.raises(DecryptionError, match="'s1'|'s2'"):
            read()
    with pytest.raises(DecryptionError):  # nor is a new message added under another key
        store.add_messages("s1", [user("more")])
    assert engine.open(Encryption(OLD)).message_count("s1") == 4


def test_a_missing_data_key_raises(engine: Engine) -> None:
    store = engine.open(Encryption(OLD))
    _fill(store)
    store.key_store.delete("s1")
    fresh = engine.open(Encryption(OLD))  # no cached key
    with pytest.raises(DecryptionError, match="s1.*no data key"):
        fresh.get_messages("s1")
    assert fresh.get_messages("s2") == [user("other")]


def test_a_flipped_byte_raises(engine: Engine) -> None:
    store = engine.open(Encryption(OLD))
    _fill(store)
    engine.write_row("s1", 2, _flip(engine.raw_row("s1", 2)))
    with pytest.raises(DecryptionError, match="message 2 of session 's1'.*altered"):
        store.get_messages("s1")
    with pytest.raises(DecryptionError):
        store.get_messages("s1", 3)
    assert store.get_messages("s1", 1) == [reply(f"four {MARKER}")]  # rows 3 and 4 only


def test_a_row_copied_into_another_session_does_not_decrypt(engine: Engine) -> None:
    store = engine.open(Encryption(OLD))
    _fill(store)
    store.add_messages("s3", [user("mine")])
    engine.write_row("s3", 1, engine.raw_row("s1", 1))
    with pytest.raises(DecryptionError, match="session 's3'"):
        store.get_messages("s3")


def test_a_plaintext_row_is_never_read(engine: Engine) -> None:
    store = engine.open(Encryption(OLD))
    _fill(store)
    engine.write_row("s1", 1, json.dumps(user("injected")))
    with pytest.raises(DecryptionError, match="not encrypted"):
        store.get_messages("s1")


def test_opening_with_and_without_keys_is_checked(engine: Engine) -> None:
    _fill(engine.open(Encryption(OLD)))
    with pytest.raises(SchemaError, match="is encrypted: open it with encryption="):
        engine.open()


def test_a_plaintext_database_is_not_opened_with_keys(engine: Engine) -> None:
    engine.open().add_messages("s1", [user("plain")])
    with pytest.raises(SchemaError, match="plaintext"):
        engine.open(Encryption(OLD))


def test_search_is_not_supported(engine: Engine) -> None:
    store = engine.open(Encryption(OLD))
    _fill(store)
    with pytest.raises(NotSupportedError):
        store.search(MARKER)


# -- keys -------------------------------------------------------------------------------------


def test_rotation_then_dropping_the_old_key_reads_everything(engine: Engine) -> None:
    _fill(engine.open(Encryption(OLD)))
    for n in range(5):
        engine.open(Encryption(OLD)).add_messages(f"more{n}", [user(str(n))])
    both = engine.open(Encryption({"new": NEW, "old": OLD}, primary="new"))
    seen: list[int] = []

    def stop_after_first_batch(count: int) -> None:
        seen.append(count)
        if len(seen) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # interrupted: a second run goes on
        both.rotate_keys(batch=2, progress=stop_after_first_batch)
    assert both.rotate_keys(batch=2) + 2 >= 7
    assert both.rotate_keys() == 0
    new_only = engine.open(Encryption(NEW))
    assert new_only.get_messages("s1")[0] == user(f"{MARKER} one")
    assert [new_only.get_messages(f"more{n}") for n in range(5)] == [
        [user(str(n))] for n in range(5)
    ]
    assert new_only.session_info("s1").metadata == {"user": MARKER, "tier": 2}
    with pytest.raises(DecryptionError, match="not among"):
        engine.open(Encryption(OLD)).get_messages("s2")


def test_keys_are_told_apart_by_fingerprint_not_name(engine: Engine) -> None:
    _fill(engine.open(Encryption(OLD)))
    renamed = engine.open(Encryption({"k2": NEW, "anything": OLD}, primary="k2"))
    assert renamed.get_messages("s2") == [user("other")]


def test_shred_leaves_the_session_unreadable_with_every_key(engine: Engine) -> None:
    store = engine.open(Encryption({"new": NEW, "old": OLD}, primary="new"))
    _fill(store)
    backup = {seq: engine.raw_row("s1", seq) for seq in (1, 2)}  # a backup of the rows
    store.shred("s1")
    assert store.get_messages("s1") == [] and store.session_info("s1") is None
    assert store.get_messages("s2") == [user("other")]
    store.add_messages("s1", [user("new"), user("life")])  # the id can be used again
    assert store.get_messages("s1") == [user("new"), user("life")]
    for seq, text in backup.items():  # the backup's rows restored into the session
        engine.write_row("s1", seq, text)
    for keys in (Encryption({"new": NEW, "old": OLD}, primary="new"), Encryption(OLD)):
        with pytest.raises(DecryptionError, match="'s1'"):
            engine.open(keys).get_messages("s1")


def test_shred_and_rotate_need_an_encrypted_store(engine: Engine) -> None:
    store = engine.open()
    with pytest.raises(NotSupportedError, match="not encrypted"):
        store.shred("s1")
    with pytest.raises(NotSupportedError, match="not encrypted"):
        store.rotate_keys()


def test_the_data_keys_can_live_elsewhere(engine: Engine, tmp_path: Path) -> None:
    if engine.kind == "sqlite":
        keys: Any = SQLiteKeyFile(tmp_path / "vault.keys")
        default_place = lambda: engine.path.with_name("sessions.db.keys").exists()  # noqa: E731
    elif engine.kind == "postgres":
        from agentsession import PostgresKeyTable
        from tests import services

        keys = PostgresKeyTable(services.postgres_dsn(), schema=f"{engine.name}_vault")
        engine.extra.append(lambda: services.drop_postgres_schema(f"{engine.name}_vault"))
        default_place = lambda: WRAPPED.search(engine.raw_text()) is not None  # noqa: E731
    else:
        from agentsession import RedisKeyHash
        from tests import services

        keys = RedisKeyHash(services.redis_url(), key=f"vault-{engine.name}")
        engine.extra.append(lambda: services.drop_redis_prefix(f"vault-{engine.name}"))
        default_place = lambda: WRAPPED.search(engine.raw_text()) is not None  # noqa: E731
    engine.extra.append(keys.close)
    store = engine.open(Encryption(OLD, key_store=keys))
    _fill(store)
    assert store.key_store is keys and keys.count() == 2
    assert not default_place()
    store.close()
    assert keys.get(["s1"])  # closing the store leaves a key store it was given open
    assert engine.open(Encryption(OLD, key_store=keys)).get_messages("s2") == [user("other")]
    # The default place has no keys: SQLite refuses to start an empty key file.
    with pytest.raises((DecryptionError, SchemaError), match="no data key|key file"):
        engine.open(Encryption(OLD)).get_messages("s2")


# -- export and import ------------------------------------------------------------------------


def test_export_is_ciphertext_unless_asked_to_decrypt(engine: Engine, tmp_path: Path) -> None:
    store = engine.open(Encryption(OLD))
    _fill(store)
    ciphertext = io.StringIO()
    assert store.export_jsonl(ciphertext) == 2
    assert MARKER not in ciphertext.getvalue()
    plain = io.StringIO()
    store.export_jsonl(plain, decrypt=True)
    assert MARKER in plain.getvalue()
    assert "encryption" not in plain.getvalue()

    # Ciphertext imports into any store holding the same master key, re-encrypted there.
    other = SQLiteStore(
        tmp_path / "other.db", encryption=Encryption({"x": NEW, "y": OLD}, primary="x")
    )
    assert other.import_jsonl(io.StringIO(ciphertext.getvalue())) == 2
    assert other.get_messages("s1") == store.get_messages("s1")
    assert other.session_info("s1").metadata == {"user": MARKER, "tier": 2}
    # ... and a plaintext export into an encrypted store is encrypted on the way in.
    third = SQLiteStore(tmp_path / "third.db", encryption=Encryption(OTHER))
    assert third.import_jsonl(io.StringIO(plain.getvalue())) == 2
    assert third.get_messages("s1") == store.get_messages("s1")
    third.close()
    assert MARKER not in (tmp_path / "third.db").read_bytes().decode("latin-1")
    # Without the master key the import stores nothing.
    stranger = SQLiteStore(tmp_path / "stranger.db", encryption=Encryption(OTHER))
    with pytest.raises(DecryptionError):
        stranger.import_jsonl(io.StringIO(ciphertext.getvalue()))
    assert stranger.list_sessions() == []
    for opened in (other, stranger):
        opened.close()


# -- engine-neutral ---------------------------------------------------------------------------


def test_the_key_file_is_private_and_apart(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "chats.db", encryption=Encryption(OLD))
    store.add_messages("s", [user("x")])
    store.close()
    mode = stat.S_IMODE(os.stat(tmp_path / "chats.db.keys").st_mode)
    assert mode == 0o600
    # The messages' file alone, with the master key, is not enough.
    elsewhere = tmp_path / "restore"
    elsewhere.mkdir()
    (elsewhere / "chats.db").write_bytes((tmp_path / "chats.db").read_bytes())
    with pytest.raises(SchemaError, match="key file .*chats.db.keys is missing"):
        SQLiteStore(elsewhere / "chats.db", encryption=Encryption(OLD))
    assert not (elsewhere / "chats.db.keys").exists()
    # A key store given to Encryption is used in place of the default one.
    keys = SQLiteKeyFile(tmp_path / "chats.db.keys")
    again = SQLiteStore(elsewhere / "chats.db", encryption=Encryption(OLD, key_store=keys))
    assert again.get_messages("s") == [user("x")]
    again.close()
    keys.close()


def test_encryption_checks_its_keys() -> None:
    raw = base64.b64decode(OLD)
    assert Encryption(raw).primary == Encryption(raw.hex()).primary == Encryption(OLD).primary
    with pytest.raises(ValueError, match="32 bytes"):
        Encryption(b"short")
    with pytest.raises(ValueError, match="neither"):
        Encryption("not a key at all")
    with pytest.raises(TypeError, match="bytes or str"):
        Encryption(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="primary"):
        Encryption({"a": OLD, "b": NEW})
    with pytest.raises(ValueError, match="same key"):
        Encryption({"a": OLD, "b": OLD}, primary="a")
    with pytest.raises(TypeError, match="Encryption"):
        SQLiteStore(encryption=OLD)  # type: ignore[arg-type]
    assert OLD not in repr(Encryption(OLD))


@pytest.mark.anyio
async def test_the_runner_works_on_an_encrypted_memory(engine: Engine) -> None:
    memory = StoreMemory(engine.open(Encryption(OLD)))
    model = ScriptedModel([[assistant_message("Paris")], [assistant_message("France")]])
    agent = Agent(name="Assistant", model=model)
    config = RunConfig(memory=memory, session_id="chat")
    assert (
        await Runner.run(agent, f"{MARKER} capital?", run_config=config)
    ).final_output == "Paris"
    assert (await Runner.run(agent, "country?", run_config=config)).final_output == "France"
    assert MARKER in json.dumps(model.last_call.input)
    assert len(await memory.get_messages("chat")) == 4
    assert await memory.rotate_keys() == 0
    await memory.shred("chat")
    assert await memory.get_messages("chat") == []
    await memory.add_messages("other", [user(MARKER)])
    assert MARKER not in engine.raw_text()
    memory.close()


def test_the_sqlite_memory_takes_encryption(tmp_path: Path) -> None:
    memory = SQLiteSessionMemory(tmp_path / "chat.db", encryption=Encryption(OLD))
    assert memory.store.encryption is not None and memory.store.key_store is not None
    memory.close()


# -- compaction -------------------------------------------------------------------------------


def test_archived_messages_and_summaries_are_encrypted(engine: Engine) -> None:
    store = engine.open(Encryption(OLD))
    turns = [user(f"{MARKER} one"), reply("two"), user("three"), reply("four")]
    turns += [user("five"), reply("six")]
    store.add_messages("s1", turns)
    (first, *_) = store.compaction_candidates("s1", 2)
    assert first == user(f"{MARKER} one")
    record = store.compact_with("s1", f"the user said {MARKER}", items=2, model="m")

    assert MARKER not in engine.raw_text()  # neither the archived turn nor the summary
    assert store.compactions("s1") == [record]
    assert store.get_messages("s1")[0]["content"].endswith(f"the user said {MARKER}")
    assert store.get_messages("s1", include_archived=True) == turns
    assert store.uncompact("s1") == record
    assert store.get_messages("s1") == turns


def test_compactions_export_and_import_encrypted(engine: Engine) -> None:
    store = engine.open(Encryption(OLD))
    turns = [user(f"{MARKER} {n}") if n % 2 == 0 else reply(f"r{n}") for n in range(8)]
    store.add_messages("s1", turns)
    first = store.compact_with("s1", f"one {MARKER}", items=2)
    second = store.compact_with("s1", f"two {MARKER}", items=3)
    visible = store.get_messages("s1")
    for decrypt in (False, True):
        buffer = io.StringIO()
        store.export_jsonl(buffer, session_ids=["s1"], decrypt=decrypt)
        assert (MARKER in buffer.getvalue()) is decrypt  # ciphertext unless asked
        assert store.import_jsonl(io.StringIO(buffer.getvalue()), on_conflict="replace") == 1
        assert store.get_messages("s1") == visible
        assert store.compactions("s1") == [first, second]
        assert store.get_messages("s1", include_archived=True) == turns
    assert MARKER not in engine.raw_text()
    assert store.uncompact("s1") == second
    assert store.uncompact("s1") == first
    assert store.get_messages("s1") == turns


@pytest.mark.parametrize("how", ["clear", "prune", "import"])
def test_no_archived_text_is_left_behind(engine: Engine, how: str) -> None:
    # Read with the engine's own driver (what this module's Engine does), on a store
    # without encryption: deleting a session must delete what its compactions archived.
    store = engine.open()
    store.add_messages("s1", [user(f"{MARKER} one"), reply("two"), user("three")])
    store.compact_with("s1", "a summary", items=2)
    assert MARKER in engine.raw_text()
    if how == "clear":
        store.clear_session("s1")
    elif how == "prune":
        store.prune(older_than=datetime.now(timezone.utc) + timedelta(hours=1))
    else:
        line = {"type": "session", "version": 1, "session_id": "s1", "created_at": 1.0}
        line.update({"updated_at": 1.0, "message_count": 0, "metadata": {}})
        store.import_jsonl([json.dumps(line) + "\n"], on_conflict="replace")
    if engine.kind == "sqlite":  # deleted rows linger in the file's free pages: ask it
        with sqlite3.connect(engine.path) as conn:
            left = conn.execute(
                "SELECT (SELECT count(*) FROM agentsession_archived) + "
                "(SELECT count(*) FROM agentsession_compactions)"
            ).fetchone()
        assert left == (0,)
    else:  # every row (PostgreSQL) or value (Redis) stored, as text
        assert MARKER not in engine.raw_text()
