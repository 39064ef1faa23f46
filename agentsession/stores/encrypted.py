"""Encryption at rest for every engine: a codec between ``StoreBase`` and the engine hooks.

A store opened with ``encryption=`` gets an ``EncryptedHooks`` in front of its engine's
hooks (``StoreBase._set_encryption``): messages are sealed after ``StoreBase`` has encoded
them to JSON text and before the engine stores them, and opened after the engine has read
them and before ``StoreBase`` decodes them; metadata values likewise. The engines never
see plaintext, and a store without encryption runs its hooks as they are: not one extra
statement, call or check.

What stays readable: session ids, counts, times and metadata *keys* (listing, paging and
retention work as before). Search needs plaintext on the server: it raises
``NotSupportedError``. A metadata filter is applied here after decryption, over every
session (the server cannot compare ciphertexts).

Keys: see ``agentsession.encryption``. Each session's data key is created on its first
write and kept wrapped in the key store; unwrapped data keys are cached per store (at
most ``CACHE`` of them). ``shred`` deletes the data key first, then the rows: a copy of
the rows taken earlier cannot be decrypted with any master key afterwards.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from .._serialize import _encoder
from ..encryption import DataKey, Encryption
from ..exceptions import DecryptionError, NotSupportedError
from ..protocol import KeyStore, RunRecord, SessionInfo
from .jsonl import ImportedSession
from .values import Progress, metadata_matches

__all__ = ("CACHE", "Codec", "EncryptedHooks", "MemoryKeyStore")

#: Unwrapped data keys a store keeps in memory.
CACHE = 4096
#: Records asked of the key store at once.
_BATCH = 500

Row = tuple[Any, str]


def _message_aad(session_id: str) -> bytes:
    return b"agentsession message\x00" + session_id.encode("utf-8", "surrogatepass")


def _metadata_aad(session_id: str, name: str) -> bytes:
    return (
        b"agentsession metadata\x00"
        + session_id.encode("utf-8", "surrogatepass")
        + b"\x00"
        + name.encode("utf-8", "surrogatepass")
    )


class MemoryKeyStore:
    """Wrapped data keys in a dict: the key store of a ``":memory:"`` SQLite database.

    Thread safety: every method may be called from any thread.
    """

    def __init__(self) -> None:
        self._records: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "MemoryKeyStore()"

    def get(self, session_ids: list[str]) -> dict[str, str]:
        with self._lock:
            return {sid: self._records[sid] for sid in session_ids if sid in self._records}

    def add(self, session_id: str, record: str) -> str:
        with self._lock:
            return self._records.setdefault(session_id, record)

    def replace(self, session_id: str, old: str, new: str) -> bool:
        with self._lock:
            if self._records.get(session_id) != old:
                return False
            self._records[session_id] = new
            return True

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._records.pop(session_id, None)

    def page(self, cursor: str | None, limit: int) -> tuple[list[tuple[str, str]], str | None]:
        with self._lock:
            ids = sorted(sid for sid in self._records if cursor is None or sid > cursor)[:limit]
            rows = [(sid, self._records[sid]) for sid in ids]
        return rows, (rows[-1][0] if len(rows) == limit else None)

    def count(self) -> int:
        return len(self._records)

    def close(self) -> None:
        """Nothing to release."""


class Codec:
    """Seals and opens one store's messages and metadata with its sessions' data keys.

    Thread safety: every method may be called from any thread (the cache has a lock).
    """

    def __init__(self, encryption: Encryption, key_store: KeyStore, where: str) -> None:
        self.encryption = encryption
        self.key_store = key_store
        self.where = where
        self._cache: dict[str, DataKey] = {}
        self._lock = threading.Lock()

    # -- data keys -------------------------------------------------------------------------

    def _remember(self, session_id: str, key: DataKey) -> None:
        with self._lock:
            if len(self._cache) >= CACHE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[session_id] = key

    def forget(self, session_id: str) -> None:
        """Drop the session's data key from the cache (it was shredded)."""
        with self._lock:
            self._cache.pop(session_id, None)

    def key_for_write(self, session_id: str) -> DataKey:
        """The session's data key, created (and stored wrapped) if it has none yet."""
        found = self._cache.get(session_id)
        if found is not None:
            return found
        record = self.key_store.get([session_id]).get(session_id)
        if record is None:
            key, record = self.encryption.new_data_key(session_id)
            stored = self.key_store.add(session_id, record)
            if stored != record:  # another writer created it first
                key = self.encryption.unwrap(session_id, stored)
        else:
            key = self.encryption.unwrap(session_id, record)
        self._remember(session_id, key)
        return key

    def key_for_read(self, session_id: str) -> DataKey:
        """The session's data key.

        Raises:
            DecryptionError: it has none (shredded, or another key store), or it does
                not unwrap with these master keys.
        """
        found = self.key_if_any(session_id)
        if found is None:
            raise self.missing(session_id)
        return found

    def key_if_any(self, session_id: str) -> DataKey | None:
        """The session's data key, or ``None`` if it has none (``DecryptionError`` if it
        does not unwrap)."""
        found = self._cache.get(session_id)
        if found is None:
            self.load([session_id])
            found = self._cache.get(session_id)
        return found

    def missing(self, session_id: str) -> DecryptionError:
        """The error for a session that has rows but no data key."""
        return DecryptionError(
            f"session {session_id!r} has no data key in {self.key_store!r}: it was "
            "shredded, or its messages were written with another key store"
        )

    def load(self, session_ids: list[str]) -> None:
        """Unwrap into the cache the data keys of those of ``session_ids`` not in it."""
        wanted = [sid for sid in dict.fromkeys(session_ids) if sid not in self._cache]
        for start in range(0, len(wanted), _BATCH):
            for sid, record in self.key_store.get(wanted[start : start + _BATCH]).items():
                self._remember(sid, self.encryption.unwrap(sid, record))

    # -- messages and metadata -------------------------------------------------------------

    def seal(self, session_id: str, encoded: list[str]) -> list[str]:
        """The ciphertexts of the session's encoded messages."""
        key = self.key_for_write(session_id)
        aad = _message_aad(session_id)
        return [key.seal(text.encode(), aad) for text in encoded]

    def open(self, session_id: str, rows: Iterable[Row]) -> list[Row]:
        """The rows with their messages decrypted (all of them, or ``DecryptionError``)."""
        rows = list(rows)
        if not rows:
            return rows
        key = self.key_for_read(session_id)
        aad = _message_aad(session_id)
        return [(k, key.open(text, aad, "message", k).decode()) for k, text in rows]

    def _open_lazily(self, session_id: str, rows: Iterable[Row]) -> Iterator[Row]:
        key: DataKey | None = None
        aad = _message_aad(session_id)
        for k, text in rows:
            if key is None:
                key = self.key_for_read(session_id)
            yield k, key.open(text, aad, "message", k).decode()

    def seal_values(self, session_id: str, values: dict[str, Any]) -> dict[str, str]:
        """Metadata ``values`` with each value encrypted (keys stay readable)."""
        if not values:
            return {}
        key = self.key_for_write(session_id)
        return {
            name: key.seal(_encoder.encode(value).encode(), _metadata_aad(session_id, name))
            for name, value in values.items()
        }

    def open_values(self, session_id: str, stored: dict[str, Any]) -> dict[str, Any]:
        """Stored metadata with each value decrypted."""
        if not stored:
            return {}
        key = self.key_for_read(session_id)
        opened = {}
        for name, text in stored.items():
            if not isinstance(text, str):
                raise DecryptionError(
                    f"metadata {name!r} of session {session_id!r} is not encrypted"
                )
            plain = key.open(text, _metadata_aad(session_id, name), "metadata", name)
            opened[name] = json.loads(plain)
        return opened

    def open_info(self, info: SessionInfo) -> SessionInfo:
        """``info`` with its metadata decrypted."""
        if not info.metadata:
            return info
        return dataclasses.replace(
            info, metadata=self.open_values(info.session_id, dict(info.metadata))
        )


class EncryptedHooks:
    """The engine hooks of one store with the codec in front (see the module docstring).

    Built over the store's own hooks, read before ``install`` replaces them on the
    instance; ``StoreBase``'s public methods then call these.
    """

    #: The hooks replaced on an encrypted store.
    HOOKS = (
        "_all_rows",
        "_newest_rows",
        "_append",
        "_append_run",
        "_pop",
        "_cut_turns",
        "_cut",
        "_compact",
        "_uncompact",
        "_archive",
        "_compaction_records",
        "_sessions",
        "_info",
        "_put_metadata",
        "_update_metadata",
        "_search_supported",
        "_search",
        "_fork",
        "_jsonl_export_one",
        "_jsonl_export_plain",
        "_jsonl_store",
    )

    #: Hooks whose default (``StoreBase``'s) calls the hooks above; replaced only where
    #: the engine does the work itself (Redis: one script), else they would seal twice.
    COMBINED = ("_lock_and_rows", "_append_and_unlock", "_append_run_and_unlock")

    def __init__(self, store: Any, codec: Codec, *, owns_key_store: bool, base: type) -> None:
        self.store = store
        self.codec = codec
        self.owns_key_store = owns_key_store
        self.hooks = (
            *self.HOOKS,
            *(
                name
                for name in self.COMBINED
                if getattr(type(store), name) is not getattr(base, name)
            ),
            "close",
        )
        self.inner = {name: getattr(store, name) for name in self.hooks}
        self.inner_missing: Callable[[list[str]], list[str]] = store._jsonl_missing
        self.inner_count: Callable[[str], int] = store._count
        self.clock: Callable[[], float] = store._clock

    def install(self) -> None:
        """Put these hooks (and ``close``) in place of the store's."""
        for name in self.hooks:
            setattr(self.store, name, getattr(self, name))

    def close(self) -> None:
        """Close the store, and the key store it opened (not one it was given)."""
        try:
            self.inner["close"]()
        finally:
            if self.owns_key_store:
                self.codec.key_store.close()

    # -- messages --------------------------------------------------------------------------

    def _all_rows(self, session_id: str) -> list[Row]:
        return self.codec.open(session_id, self.inner["_all_rows"](session_id))

    def _newest_rows(self, session_id: str, count: int) -> list[Row]:
        return self.codec.open(session_id, self.inner["_newest_rows"](session_id, count))

    def _append(self, session_id: str, encoded: list[str], messages: list[Any]) -> None:
        # No plaintext for an engine's search column: every message's words are ''.
        blank: list[Any] = [{}] * len(encoded)
        self.inner["_append"](session_id, self.codec.seal(session_id, encoded), blank)

    def _append_run(
        self, session_id: str, encoded: list[str], messages: list[Any], run: RunRecord
    ) -> None:
        # The run record (counts, names, times: no message content) is stored as it is.
        sealed = self.codec.seal(session_id, encoded) if encoded else []
        self.inner["_append_run"](session_id, sealed, [{}] * len(sealed), run)

    def _lock_and_rows(
        self, session_id: str, owner: str, lease: float, count: int | None
    ) -> list[Row] | None:
        rows = self.inner["_lock_and_rows"](session_id, owner, lease, count)
        if rows is None:
            return None
        try:
            return self.codec.open(session_id, rows)
        except BaseException:  # a read that fails gives the lease back
            self.store._unlock(session_id, owner)
            raise

    def _append_and_unlock(
        self, session_id: str, owner: str, encoded: list[str], messages: list[Any]
    ) -> None:
        try:
            sealed = self.codec.seal(session_id, encoded) if encoded else []
        except BaseException:  # the lease is given back whatever happens
            self.store._unlock(session_id, owner)
            raise
        self.inner["_append_and_unlock"](session_id, owner, sealed, [{}] * len(sealed))

    def _append_run_and_unlock(
        self,
        session_id: str,
        owner: str,
        encoded: list[str],
        messages: list[Any],
        run: RunRecord,
    ) -> None:
        try:
            sealed = self.codec.seal(session_id, encoded) if encoded else []
        except BaseException:  # the lease is given back whatever happens
            self.store._unlock(session_id, owner)
            raise
        self.inner["_append_run_and_unlock"](session_id, owner, sealed, [{}] * len(sealed), run)

    def _check_readable(self, session_id: str) -> None:
        """Before a removal: raise ``DecryptionError`` if the keys cannot read the session,
        so that a wrong or missing key never deletes what it cannot return."""
        if self.codec.key_if_any(session_id) is None and self.inner_count(session_id):
            raise self.codec.missing(session_id)

    def _pop(self, session_id: str) -> Row | None:
        self._check_readable(session_id)
        row = self.inner["_pop"](session_id)
        return None if row is None else self.codec.open(session_id, [row])[0]

    def _cut_turns(self, session_id: str, turns_start: Callable[[Iterable[Row]], Any]) -> list[Row]:
        def start(newest_first: Iterable[Row]) -> Any:
            return turns_start(self.codec._open_lazily(session_id, newest_first))

        return self.codec.open(session_id, self.inner["_cut_turns"](session_id, start))

    def _cut(self, session_id: str, keep: int) -> list[Row]:
        self._check_readable(session_id)
        return self.codec.open(session_id, self.inner["_cut"](session_id, keep))

    # -- compaction: the summary is sealed like a message; archived rows stay as stored ----

    def _compact(self, session_id: str, cut: int, summary: str, record: str) -> None:
        self._check_readable(session_id)
        # Sealed once: the engine stores this one text as the first message and in the
        # archive entry, and tells the summary by comparing the two.
        (sealed,) = self.codec.seal(session_id, [summary])
        self.inner["_compact"](session_id, cut, sealed, record)

    def _uncompact(self, session_id: str) -> tuple[str, Row] | None:
        self._check_readable(session_id)
        entry = self.inner["_uncompact"](session_id)
        if entry is None:
            return None
        record, summary = entry
        return record, self.codec.open(session_id, [summary])[0]

    def _archive(self, session_id: str) -> tuple[list[Row], list[tuple[str, Row, list[Row]]]]:
        live, entries = self.inner["_archive"](session_id)
        return self.codec.open(session_id, live), [
            (
                record,
                self.codec.open(session_id, [summary])[0],
                self.codec.open(session_id, rows),
            )
            for record, summary, rows in entries
        ]

    def _compaction_records(self, session_id: str) -> list[tuple[str, Row]]:
        found = self.inner["_compaction_records"](session_id)
        return [(record, self.codec.open(session_id, [summary])[0]) for record, summary in found]

    # -- sessions and metadata -------------------------------------------------------------

    def _sessions(
        self, wanted: dict[str, Any], after: tuple[float, Any] | None, limit: int | None
    ) -> list[tuple[SessionInfo, float, Any]]:
        found = self.inner["_sessions"]({}, after, None if wanted else limit)
        self.codec.load([info.session_id for info, _, _ in found if info.metadata])
        opened = [(self.codec.open_info(info), updated, key) for info, updated, key in found]
        if wanted:
            opened = [entry for entry in opened if metadata_matches(entry[0].metadata, wanted)]
            if limit is not None:
                opened = opened[:limit]
        return opened

    def _info(self, session_id: str) -> SessionInfo | None:
        info = self.inner["_info"](session_id)
        return None if info is None else self.codec.open_info(info)

    def _put_metadata(self, session_id: str, text: str) -> None:
        sealed = self.codec.seal_values(session_id, json.loads(text))
        self.inner["_put_metadata"](session_id, _encoder.encode(sealed))

    def _update_metadata(
        self, session_id: str, changes: dict[str, Any], remove: list[str]
    ) -> dict[str, Any]:
        sealed = self.codec.seal_values(session_id, changes)
        merged = self.inner["_update_metadata"](session_id, sealed, remove)
        return self.codec.open_values(session_id, merged)

    def _search_supported(self) -> None:
        self.inner["_search_supported"]()  # StoreClosed first, as on a plain store
        raise NotSupportedError(
            f"{self.store!r} is encrypted: full-text search needs the messages' words in "
            "the database, which an encrypted store never writes there"
        )

    def _search(self, *args: Any) -> list[tuple[str, int, str, str, float]]:
        self._search_supported()
        return []

    # -- fork, export, import --------------------------------------------------------------

    def _read_session(self, session_id: str) -> list[dict[str, Any]]:
        """The session's JSONL records as the engine exports them (ciphertext); ``[]``
        if it is gone. The header comes first; records of other types are kept as they
        are, in their place."""
        buffer = io.StringIO()
        if not self.inner["_jsonl_export_one"](session_id, buffer):
            return []
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    def _fork(self, session_id: str, new_session_id: str, at: int | None) -> int:
        # Re-encrypted under the new session's data key, so not one statement: the target
        # is checked, then written in one transaction (a message added to it between the
        # two is replaced by the copy).
        found = self._read_session(session_id)
        if not found:
            raise ValueError(f"no session {session_id!r} to fork")
        header = found[0]
        records = [record for record in found if record.get("type") == "message"]
        count = len(records)
        if at is not None and at > count:
            raise ValueError(
                f"at={at} is past the end of session {session_id!r} ({count} messages)"
            )
        target = self.inner["_info"](new_session_id)
        if target is not None and target.message_count > 0:
            raise ValueError(
                f"session {new_session_id!r} already has {target.message_count} messages; "
                "fork into a new or empty session"
            )
        copied = count if at is None else at
        now = self.clock()
        metadata = self.codec.open_values(session_id, header["metadata"])
        fork = ImportedSession(
            {
                "session_id": new_session_id,
                "created_at": now,
                "updated_at": now,
                "message_count": copied,
                "metadata": self.codec.seal_values(new_session_id, metadata),
            },
            0,
        )
        texts = self.codec.open(session_id, [(r["seq"], _stored(r)) for r in records[:copied]])
        sealed = self.codec.seal(new_session_id, [text for _, text in texts]) if texts else []
        fork.rows = [
            (r["seq"], r["created_at"], text, "")
            for r, text in zip(records[:copied], sealed, strict=True)
        ]
        self.inner["_jsonl_store"](fork, "replace" if target is not None else "error")
        return copied

    def _jsonl_export_one(self, session_id: str, fp: IO[str]) -> bool:
        """Export as stored (ciphertext), the header carrying the wrapped data key."""
        records = self._read_session(session_id)
        if not records:
            return False
        wrapped = self.codec.key_store.get([session_id]).get(session_id)
        if wrapped is not None:
            records[0]["encryption"] = {"data_key": wrapped}
        fp.write("".join(_encoder.encode(record) + "\n" for record in records))
        return True

    def _jsonl_export_plain(self, session_id: str, fp: IO[str]) -> bool:
        """Export in plaintext, as a store without encryption would."""
        records = self._read_session(session_id)
        if not records:
            return False
        records[0]["metadata"] = self.codec.open_values(session_id, records[0]["metadata"])
        messages = [record for record in records if record.get("type") == "message"]
        texts = self.codec.open(session_id, [(r["seq"], _stored(r)) for r in messages])
        for record, (_, text) in zip(messages, texts, strict=True):
            record.pop("raw", None)
            record["message"] = json.loads(text)
        fp.write("".join(_encoder.encode(record) + "\n" for record in records))
        return True

    def _jsonl_store(self, session: ImportedSession, on_conflict: str) -> bool:
        """Import a session: its messages re-encrypted under this store's data key of it.

        A file exported in ciphertext is decrypted with the data key its header carries
        (which this store's master keys must unwrap); a plaintext file is encrypted.
        """
        if self.inner_missing([session.session_id]) == [] and on_conflict != "replace":
            if on_conflict == "skip":
                return False
            raise session.conflict()
        sid = session.session_id
        carried = session.header.get("encryption")
        source: Any = None
        if isinstance(carried, dict):
            source = self.codec.encryption.unwrap(sid, str(carried.get("data_key")))
            metadata = {
                name: json.loads(source.open(text, _metadata_aad(sid, name), "metadata", name))
                for name, text in json.loads(session.metadata).items()
            }
            texts = [
                source.open(text, _message_aad(sid), "message", seq).decode()
                for seq, _, text, _ in session.rows
            ]
        else:
            metadata = json.loads(session.metadata)
            texts = [text for _, _, text, _ in session.rows]
        session.metadata = _encoder.encode(self.codec.seal_values(sid, metadata))
        sealed = self.codec.seal(sid, texts) if texts else []
        session.rows = [
            (seq, created, text, "")
            for (seq, created, _, _), text in zip(session.rows, sealed, strict=True)
        ]
        session.compactions = self._sealed_compactions(session, source, texts, sealed)
        return bool(self.inner["_jsonl_store"](session, on_conflict))

    def _sealed_compactions(
        self, session: ImportedSession, source: Any, texts: list[str], sealed: list[str]
    ) -> list[tuple[str, str, list[tuple[float, str]]]]:
        """An imported session's compactions under this store's data key (opened with
        ``source``, the file's data key, if it carried one). A summary that is the
        session's first message gets that message's sealed text, so that the engine
        still tells it apart (see ``StoreBase._uncompact``)."""
        sid = session.session_id
        aad = _message_aad(sid)

        def plain(text: str) -> str:
            return text if source is None else source.open(text, aad, "message", 0).decode()

        opened = [[plain(text) for _, text in archived] for _, _, archived in session.compactions]
        items = [self.codec.seal(sid, texts_of) for texts_of in opened]
        # A summary is stored as the message it became: the session's first, or the
        # first one a later compaction archived (the engines compare stored texts).
        heads = [
            (plain_of[0], sealed_of[0]) for plain_of, sealed_of in zip(opened, items, strict=True)
        ]
        if texts:
            heads.append((texts[0], sealed[0]))
        found = []
        for n, (record, summary, archived) in enumerate(session.compactions):
            summary_text = plain(summary)
            same = [stored for text, stored in heads[n + 1 :] if text == summary_text]
            stored = same[0] if same else self.codec.seal(sid, [summary_text])[0]
            times = [created for created, _ in archived]
            found.append((record, stored, list(zip(times, items[n], strict=True))))
        return found

    # -- keys ------------------------------------------------------------------------------

    def rotate(self, batch: int, progress: Progress | None) -> int:
        """Re-wrap every data key not wrapped by the primary key, ``batch`` at a time."""
        rotated = 0
        cursor: str | None = None
        while True:
            page, cursor = self.codec.key_store.page(cursor, batch)
            for session_id, record in page:
                new = self.codec.encryption.rewrap(session_id, record)
                if new is not None and self.codec.key_store.replace(session_id, record, new):
                    rotated += 1
            if progress is not None and page:
                progress(len(page))
            if cursor is None:
                return rotated

    def shred(self, session_id: str) -> None:
        """Delete the session's data key, then its record and messages."""
        self.codec.key_store.delete(session_id)
        self.codec.forget(session_id)
        self.store._clear(session_id)


def _stored(record: dict[str, Any]) -> str:
    """The stored text of an exported message record (``raw`` for ciphertext)."""
    if "raw" in record:
        return str(record["raw"])
    return _encoder.encode(record.get("message"))
