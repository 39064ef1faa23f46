"""The command line on an encrypted database: keys from the environment, keygen,
rotate-keys and export --decrypt. One-line errors, never a traceback."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agentsession import Encryption, SQLiteStore, generate_key
from agentsession.cli import cli

OLD = generate_key()
NEW = generate_key()


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AGENTSESSION_DB", "AGENTSESSION_KEY", "AGENTSESSION_OLD_KEYS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "sessions.db"
    with SQLiteStore(path, encryption=Encryption(OLD)) as store:
        for n in range(3):
            store.add_messages(f"s{n}", [user(f"secret {n}")])
        store.set_metadata("s0", {"user_id": "u1"})
    return path


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_keygen_prints_a_new_32_byte_key() -> None:
    first, second = run("keygen").output.strip(), run("keygen").output.strip()
    assert len(base64.b64decode(first, validate=True)) == 32
    assert first != second
    Encryption(first)


def test_commands_read_the_key_from_the_environment(db: Path) -> None:
    shown = run("show", "s0", "--db", str(db), env={"AGENTSESSION_KEY": OLD})
    assert shown.exit_code == 0 and "secret 0" in shown.output
    listed = run("sessions", "--db", str(db), "--json", env={"AGENTSESSION_KEY": OLD})
    assert sorted(s["session_id"] for s in json.loads(listed.output)) == ["s0", "s1", "s2"]
    meta = run("meta", "s0", "--db", str(db), "--json", env={"AGENTSESSION_KEY": OLD})
    assert json.loads(meta.output) == {"user_id": "u1"}
    changed = run("meta", "s0", "tier=2", "--db", str(db), env={"AGENTSESSION_KEY": OLD})
    assert changed.exit_code == 0
    with SQLiteStore(db, encryption=Encryption(OLD)) as store:
        assert store.session_info("s0").metadata == {"user_id": "u1", "tier": 2}


def test_without_the_key_the_error_says_which_variable(db: Path) -> None:
    result = run("show", "s0", "--db", str(db))
    assert result.exit_code == 1
    assert "is encrypted: open it with AGENTSESSION_KEY set" in result.output
    assert len(result.output.strip().splitlines()) == 1
    wrong = run("show", "s0", "--db", str(db), env={"AGENTSESSION_KEY": NEW})
    assert wrong.exit_code == 1 and "not among" in wrong.output
    bad = run("show", "s0", "--db", str(db), env={"AGENTSESSION_KEY": "nope"})
    assert bad.exit_code == 2 and "32 bytes" in bad.output and "nope" not in bad.output


def test_rotate_keys_then_the_old_key_can_go(db: Path) -> None:
    env = {"AGENTSESSION_KEY": NEW, "AGENTSESSION_OLD_KEYS": OLD}
    result = run("rotate-keys", "--db", str(db), "--batch", "2", env=env)
    assert result.exit_code == 0, result.output
    assert "Re-wrapped 3 data keys" in result.output
    again = run("rotate-keys", "--db", str(db), env=env)
    assert "Re-wrapped 0 data keys" in again.output
    shown = run("show", "s2", "--db", str(db), env={"AGENTSESSION_KEY": NEW})
    assert shown.exit_code == 0 and "secret 2" in shown.output


def test_rotate_keys_needs_a_key(db: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.db"
    SQLiteStore(plain).close()
    result = run("rotate-keys", "--db", str(plain))
    assert result.exit_code == 1 and "set AGENTSESSION_KEY" in result.output


def test_export_writes_ciphertext_unless_decrypt(db: Path, tmp_path: Path) -> None:
    env = {"AGENTSESSION_KEY": OLD}
    sealed = run("export", "--db", str(db), env=env)
    assert sealed.exit_code == 0 and "secret" not in sealed.output
    plain = run("export", "--db", str(db), "--decrypt", env=env)
    assert "secret 1" in plain.output
    (tmp_path / "out.jsonl").write_text(sealed.stdout)
    copy = tmp_path / "copy.db"
    imported = run(
        "import",
        str(tmp_path / "out.jsonl"),
        "--db",
        str(copy),
        "--create",
        env={"AGENTSESSION_KEY": NEW, "AGENTSESSION_OLD_KEYS": OLD},
    )
    assert imported.exit_code == 0, imported.output
    with SQLiteStore(copy, encryption=Encryption(NEW)) as store:
        assert store.get_messages("s1") == [user("secret 1")]


def test_search_on_an_encrypted_database_says_why_not(db: Path) -> None:
    result = run("search", "secret", "--db", str(db), env={"AGENTSESSION_KEY": OLD})
    assert result.exit_code == 1 and "is encrypted: full-text search" in result.output
