"""Export and import of sessions as JSON Lines (format version 1), for every engine.

Each session is a header line followed by one line per message, oldest first::

    {"type":"session","version":1,"session_id":"s1","created_at":1717171717.25,
     "updated_at":1717171720.5,"message_count":2,"metadata":{"user_id":"u1"},"end_line":true}
    {"type":"message","seq":1,"created_at":1717171717.25,"message":{"role":"user",...}}
    {"type":"message","seq":2,"created_at":1717171720.5,"message":{...}}

(each object on one line), then one line per run record of its usage ledger, oldest
first (see ``protocol.RunRecord``; its fields, times as Unix seconds)::

    {"type":"run","run_id":"...","session_id":"s1","started_at":1717171716.5,...}

then one line per compaction in force (see ``docs/compaction.md``), oldest first: its
record, its summary item and the messages it archived, as stored::

    {"type":"compaction","record":{"compacted_items":4,...},"summary":{"message":{...}},
     "archived":[{"created_at":1717171717.25,"message":{...}},...]}

Run records of a session the store has no record of (a new session's run rolled back:
``add_messages(session_id, [], run=...)`` records a run without creating the session)
follow the sessions of a full export, each such session's as a ``"runs"`` line and its
run lines::

    {"type":"runs","session_id":"s2"}
    {"type":"run","run_id":"...","session_id":"s2",...}

An import adds those of them whose ``run_id`` the session's ledger lacks (so importing
a file twice adds nothing more), and creates no session, whatever ``on_conflict`` says.
Then comes a trailer, ``{"type":"end","sessions":1,"records":4}``.
An encrypted store (see ``stores.encrypted``) exports its
messages as ``"raw"`` ciphertext and its metadata values encrypted, and adds
``"encryption": {"data_key": "<the session's data key, wrapped by a master key>"}`` to
the header, unless asked to decrypt; run records hold no message content and are
written as they are. Times are Unix seconds (UTC) as JSON numbers, written with
enough digits to read back exactly. ``seq`` runs 1..``message_count``. A stored row that
is not valid JSON is exported as ``"raw": "<its text>"`` in place of ``"message"``, so
even damage round-trips. Files are UTF-8; blank lines are ignored on import; unknown
keys are ignored (for later minor additions); an unknown ``version`` is refused.

The last line, the trailer (``"type":"end"``), counts the sessions and lines before it,
so an import can tell a complete export from one cut short at a session boundary (a
cut inside a session already shows as a header whose ``message_count`` is not met);
headers say ``"end_line":true`` so that a file cut before its trailer is known as such.
A file without either (written before the trailer existed) imports as before; one whose
trailer is missing or disagrees with what precedes it, that has lines after it, or that
ends mid-line is refused, naming the line (the sessions before it stay imported).
Readers from before the trailer refuse its line (after importing every session but the
last): drop the last line for them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from typing import IO, Any, Literal, cast

from .._files import replaced_text_file
from .._serialize import _decode, _encoder, encode_messages, message_text
from .._validate import check_session_id
from ..compaction import dump_compaction_fields
from ..protocol import RunRecord
from .runs import COLUMNS, from_json, to_row
from .values import Progress, check_timestamp, dump_metadata

__all__ = (
    "FORMAT_VERSION",
    "ImportedRuns",
    "ImportedSession",
    "JsonlMixin",
    "Trailer",
    "header_line",
    "message_lines",
    "run_lines",
)

#: More run records than any session holds: "all of them" for ``runs``.
_ALL_RUNS = 2**62

#: The ``version`` written in every session header.
FORMAT_VERSION = 1

_CONFLICTS = ("error", "skip", "replace")

#: A stored message as the hooks hand it over: ``(row key, message JSON text)``.
Row = tuple[Any, str]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_parse = json.JSONDecoder(parse_constant=_reject_constant).decode


class ImportedSession:
    """One session read from a file and checked, waiting to be stored."""

    def __init__(self, header: dict[str, Any], line: int) -> None:
        self.line = line
        #: The header record as read, with any keys a later minor version added
        #: (``encryption``: the wrapped data key of an encrypted store's export).
        self.header = header
        self.session_id: str = header["session_id"]
        self.created_at: float = header["created_at"]
        self.updated_at: float = header["updated_at"]
        self.message_count: int = header["message_count"]
        self.metadata = dump_metadata(header["metadata"])
        #: ``(seq, created_at, message JSON text, searchable text)``, in order.
        self.rows: list[tuple[int, float, str, str]] = []
        #: The session's run records, oldest first.
        self.runs: list[RunRecord] = []
        #: Its compactions in force, oldest first: ``(record text, summary message JSON
        #: text, [(created_at, archived message JSON text)...])`` (see ``compaction``).
        self.compactions: list[tuple[str, str, list[tuple[float, str]]]] = []

    def conflict(self) -> ValueError:
        """The error for a session the store already has, with ``on_conflict="error"``."""
        return ValueError(
            f"line {self.line}: session {self.session_id!r} is already in the "
            "database (use on_conflict='skip' or 'replace')"
        )


class ImportedRuns:
    """The run records of a session with no record of its own, read from a file."""

    def __init__(self, session_id: str, line: int) -> None:
        self.line = line
        self.session_id = session_id
        #: The run records, oldest first.
        self.runs: list[RunRecord] = []


def _runs_header(record: dict[str, Any], line: int) -> ImportedRuns:
    try:
        check_session_id(record.get("session_id"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"line {line}: runs line {exc}") from None
    return ImportedRuns(record["session_id"], line)


def _header(record: dict[str, Any], line: int) -> ImportedSession:
    def bad(what: str) -> ValueError:
        return ValueError(f"line {line}: session header {what}")

    if record.get("version") != FORMAT_VERSION:
        raise bad(f"has version {record.get('version')!r}; this agentsession reads version 1")
    try:
        check_session_id(record.get("session_id"))
    except (TypeError, ValueError) as exc:
        raise bad(str(exc)) from None
    for key in ("created_at", "updated_at"):
        if not check_timestamp(record.get(key)):
            raise bad(f"needs {key} as a number of seconds, got {record.get(key)!r}")
    count = record.get("message_count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise bad(f"needs message_count as an int >= 0, got {count!r}")
    try:
        return ImportedSession(record, line)
    except (TypeError, ValueError) as exc:
        raise bad(str(exc)) from None


def _in_a_session(
    current: ImportedSession | ImportedRuns | None, kind: str, number: int
) -> ImportedSession:
    """The session a ``message`` or ``compaction`` line belongs to.

    Raises:
        ValueError: the line comes before any session header, or among the run records
            of a session that has no header.
    """
    if current is None:
        raise ValueError(f"line {number}: a {kind} line before any session header")
    if isinstance(current, ImportedRuns):
        raise ValueError(
            f"line {number}: a {kind} line among the run records of session "
            f"{current.session_id!r}, which has no session header"
        )
    return current


def _message(record: dict[str, Any], line: int, session: ImportedSession) -> None:
    seq = len(session.rows) + 1
    if record.get("seq") != seq or isinstance(record.get("seq"), bool):
        raise ValueError(
            f"line {line}: message of session {session.session_id!r} has seq "
            f"{record.get('seq')!r}, expected {seq}"
        )
    if not check_timestamp(record.get("created_at")):
        raise ValueError(f"line {line}: message needs created_at as a number of seconds")
    if "message" in record:
        try:
            (text,) = encode_messages([record["message"]])
        except TypeError as exc:
            raise ValueError(f"line {line}: {exc}") from None
        searchable = message_text(record["message"])
    elif isinstance(record.get("raw"), str):
        text, searchable = record["raw"], ""
    else:
        raise ValueError(f"line {line}: message line needs a 'message' object")
    session.rows.append((seq, record["created_at"], text, searchable))


def header_line(
    session_id: str, created_at: float, updated_at: float, count: int, metadata: dict[str, Any]
) -> str:
    """The session header line (ending in a newline)."""
    header = {
        "type": "session",
        "version": FORMAT_VERSION,
        "session_id": session_id,
        "created_at": created_at,
        "updated_at": updated_at,
        "message_count": count,
        "metadata": metadata,
        Trailer.PROMISE: True,
    }
    return _encoder.encode(header) + "\n"


def message_lines(rows: Iterable[tuple[int, float, str]]) -> str:
    """The message lines of stored ``(seq, created_at, message JSON text)`` rows.

    Valid compact JSON is written as stored; other valid JSON is re-encoded on one line;
    text that is not a JSON object goes out as ``"raw"``, so damage round-trips.
    """
    out = []
    for seq, created_at, text in rows:
        start = f'{{"type":"message","seq":{seq},"created_at":{created_at!r},'
        try:
            valid = isinstance(_decode(text), dict)
        except (TypeError, ValueError):
            valid = False
        if valid and "\n" not in text and "\r" not in text:  # compact: use as stored
            out.append(f'{start}"message":{text}}}\n')
        elif valid:
            out.append(f'{start}"message":{_encoder.encode(_decode(text))}}}\n')
        else:
            out.append(f'{start}"raw":{_encoder.encode(text)}}}\n')
    return "".join(out)


class Trailer:
    """The export's last line (``"type":"end"``): written, and checked on import, here only.

    It counts the sessions and every record line before it (headers, messages, run
    records, and whatever line types later versions add), so it needs no change when
    the format grows. On export, ``write`` passes the text on to the file, counting its
    lines, and ``line`` is the trailer; on import, ``seen`` counts each record read and
    ``check`` / ``check_end`` compare the file with its trailer.
    """

    #: The trailer's ``type``.
    KIND = "end"
    #: The header key that says the file ends with a trailer.
    PROMISE = "end_line"

    def __init__(self, fp: IO[str] | None = None) -> None:
        self._fp = fp
        #: Session headers, and record lines of every type, written or read so far.
        self.sessions = 0
        self.records = 0
        #: Whether a header said the file ends with a trailer (on import).
        self.promised = False

    def write(self, text: str) -> int:
        """Write ``text`` to the wrapped file, counting its lines (on export)."""
        assert self._fp is not None
        self.records += text.count("\n")
        return self._fp.write(text)

    def line(self, sessions: int) -> str:
        """The trailer for an export of ``sessions`` sessions written through ``write``."""
        record = {"type": self.KIND, "sessions": sessions, "records": self.records}
        return _encoder.encode(record) + "\n"

    def seen(self, record: dict[str, Any]) -> None:
        """Count one record read before the trailer."""
        self.records += 1
        if record.get("type") == "session":
            self.sessions += 1
            self.promised = self.promised or record.get(self.PROMISE) is True

    def check(self, record: dict[str, Any], line: int) -> None:
        """Refuse a trailer that does not match the records read before it.

        Raises:
            ValueError: naming the line, when the counts differ: the file is incomplete.
        """
        wanted = (record.get("sessions"), record.get("records"))
        if wanted != (self.sessions, self.records):
            raise ValueError(
                f"line {line}: the export's end line says it holds {wanted[0]!r} sessions "
                f"in {wanted[1]!r} lines, but {self.sessions} sessions in {self.records} "
                "lines come before it: the file is incomplete (cut short or edited)"
            )

    def check_end(self, read_trailer: bool, last_line: int) -> None:
        """Refuse a file whose headers promised a trailer it does not end with.

        Raises:
            ValueError: naming the last line.
        """
        if self.promised and not read_trailer:
            raise ValueError(
                f"line {last_line}: the file ends before the export's end line: it was cut "
                "short (an interrupted export or copy)"
            )


def _run(record: dict[str, Any], line: int, session: ImportedSession | ImportedRuns) -> None:
    fields = {key: value for key, value in record.items() if key != "type"}
    try:
        session.runs.append(from_json(fields, session.session_id))
    except ValueError as exc:
        raise ValueError(f"line {line}: {exc}") from None


def _stored_text(item: Any, line: int, what: str) -> str:
    """The stored JSON text of an exported ``{"message": {...}}`` or ``{"raw": "..."}``."""
    if isinstance(item, dict) and "message" in item:
        try:
            (text,) = encode_messages([item["message"]])
        except TypeError as exc:
            raise ValueError(f"line {line}: {what}: {exc}") from None
        return text
    if isinstance(item, dict) and isinstance(item.get("raw"), str):
        return str(item["raw"])
    raise ValueError(f"line {line}: {what} needs a 'message' object")


def _compaction(record: dict[str, Any], line: int, session: ImportedSession) -> None:
    fields = record.get("record")
    archived = record.get("archived")
    if not isinstance(fields, dict) or not isinstance(archived, list) or not archived:
        raise ValueError(
            f"line {line}: a compaction line needs a 'record' object and a non-empty "
            "'archived' list"
        )
    try:
        stored = dump_compaction_fields(fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"line {line}: compaction record: bad or missing {exc}") from None
    summary = _stored_text(record.get("summary"), line, "compaction summary")
    items: list[tuple[float, str]] = []
    for item in archived:
        created = item.get("created_at") if isinstance(item, dict) else None
        if created is None or not check_timestamp(created):
            raise ValueError(f"line {line}: archived message needs created_at as a number")
        items.append((float(created), _stored_text(item, line, "archived message")))
    session.compactions.append((stored, summary, items))


def compaction_lines(entries: Iterable[tuple[str, Row, list[Row]]]) -> str:
    """The compaction lines of ``(record text, summary row, archived rows)`` entries
    (``StoreBase._archive``; archived rows keyed by their ``created_at``), oldest first."""
    out = []
    for stored, (_, summary), archived in entries:
        items = [_exported(text, {"created_at": created}) for created, text in archived]
        line = {
            "type": "compaction",
            "record": json.loads(stored),
            "summary": _exported(summary, {}),
            "archived": items,
        }
        out.append(_encoder.encode(line) + "\n")
    return "".join(out)


def _exported(text: str, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with the stored ``text`` as ``"message"`` (a JSON object) or ``"raw"``."""
    try:
        decoded = _decode(text)
    except (TypeError, ValueError):
        decoded = None
    if isinstance(decoded, dict):
        return {**fields, "message": decoded}
    return {**fields, "raw": text}


def run_lines(records: Iterable[RunRecord]) -> str:
    """The run lines of ``records`` (oldest first)."""
    out = []
    for record in records:
        values = dict(zip(COLUMNS, to_row(record), strict=True))
        out.append(_encoder.encode({"type": "run", **values}) + "\n")
    return "".join(out)


class JsonlMixin:
    """``export_jsonl`` and ``import_jsonl`` over four engine hooks.

    A store implements ``_jsonl_session_ids``, ``_jsonl_missing``, ``_jsonl_export_one``
    and ``_jsonl_store``; argument checks, the file format and the all-or-nothing rule
    per session live here, the same for every engine.
    """

    def _jsonl_session_ids(self) -> Iterator[str]:
        """Every session id, oldest record first, read a page at a time."""
        raise NotImplementedError

    def _jsonl_missing(self, session_ids: list[str]) -> list[str]:
        """Those of ``session_ids`` the store has no record of."""
        raise NotImplementedError

    def _jsonl_export_one(self, session_id: str, fp: IO[str]) -> bool:
        """Write one session (header and messages) from one snapshot; ``False`` if gone."""
        raise NotImplementedError

    def _runs(self, session_id: str, limit: int) -> list[RunRecord]:
        """The session's newest ``limit`` run records, newest first (``StoreBase``)."""
        raise NotImplementedError

    def _jsonl_archive(self, session_id: str, decrypt: bool) -> list[tuple[str, Row, list[Row]]]:
        """The session's compactions for its export, as ``StoreBase._archive`` gives them
        (ciphertext on an encrypted store unless ``decrypt``); ``[]``: none."""
        return []

    def _usage_by_session(self, limit: int | None) -> list[tuple[str, Any]]:
        """``(session_id, usage)`` of every session with run records (``StoreBase``)."""
        raise NotImplementedError

    def _jsonl_export_plain(self, session_id: str, fp: IO[str]) -> bool:
        """``_jsonl_export_one`` in plaintext: the same, unless the store is encrypted."""
        return self._jsonl_export_one(session_id, fp)

    def _jsonl_store(self, session: ImportedSession, on_conflict: str) -> bool:
        """Store one checked session, its run records replacing any the store had, in
        one transaction; ``False`` if skipped.

        Raises ``session.conflict()`` when the session exists and ``on_conflict`` is
        ``"error"``.
        """
        raise NotImplementedError

    def export_jsonl(
        self,
        fp: IO[str] | str | os.PathLike[str],
        *,
        session_ids: Iterable[str] | None = None,
        progress: Progress | None = None,
        decrypt: bool = False,
    ) -> int:
        """Write sessions to ``fp`` as JSON Lines (see the module docstring for the format).

        Sessions are read a page at a time and each session's messages streamed, so
        memory use stays small whatever the size of the database. Each session is read
        in one read transaction (a consistent snapshot of it); writers are not blocked.
        Its run records (the usage ledger) are read right after it. A full export
        (``session_ids`` None) then writes the run records of the sessions the store has
        no record of (a run rolled back on a new session), which ``import_jsonl`` adds
        back without creating those sessions.

        Args:
            fp: a text file open for writing (UTF-8), or a path: the file is then
                written as UTF-8 through a temporary file in the same folder (created
                readable by its owner only) that replaces it only once the export is
                complete, so an interrupted export never leaves a partial file.
            session_ids: export these sessions, in this order; ``None`` exports all,
                oldest record first.
            progress: called with 1 after each session is written.
            decrypt: (an encrypted store) write the messages and metadata decrypted;
                by default they are written as stored, in ciphertext, each session
                with its wrapped data key, which imports into a store holding the same
                master keys. Without encryption the export is plaintext either way.

        Returns:
            How many sessions were written.

        Raises:
            TypeError: a bad session id, or ``decrypt`` not a bool.
            ValueError: a named session does not exist (checked before writing).
            DecryptionError: (an encrypted store) a session cannot be decrypted (with
                ``decrypt``), or its data key does not unwrap; the file is then left
                as it was (a path) or holds the sessions before it (an open file).
            StoreClosed, StoreError: the store is closed or the database failed.
            OSError: writing to ``fp`` failed (a path's file is then left as it was).
        """
        if not isinstance(decrypt, bool):
            raise TypeError(f"decrypt must be a bool, got {decrypt!r:.80}")
        ids = self._jsonl_session_ids() if session_ids is None else self._known(session_ids)
        export_one = self._jsonl_export_plain if decrypt else self._jsonl_export_one
        target = replaced_text_file(fp) if isinstance(fp, (str, os.PathLike)) else nullcontext(fp)
        written = 0
        with target as out:
            trailer = Trailer(out)
            for session_id in ids:
                if export_one(session_id, trailer):  # type: ignore[arg-type]
                    trailer.write(run_lines(self._runs(session_id, _ALL_RUNS)[::-1]))
                    trailer.write(compaction_lines(self._jsonl_archive(session_id, decrypt)))
                    written += 1
                    if progress is not None:
                        progress(1)
            if session_ids is None:
                self._jsonl_export_sessionless_runs(trailer)
            out.write(trailer.line(written))
        return written

    def _jsonl_export_sessionless_runs(self, trailer: Trailer) -> None:
        """Write the run records of every session id the store has runs but no session
        record for: a ``"runs"`` line, then its run lines (see the module docstring)."""
        ledger = [session_id for session_id, _ in self._usage_by_session(None)]
        for session_id in sorted(self._jsonl_missing(ledger)):
            records = self._runs(session_id, _ALL_RUNS)[::-1]
            if records:
                runs = {"type": "runs", "session_id": session_id}
                trailer.write(_encoder.encode(runs) + "\n" + run_lines(records))

    def _jsonl_store_runs(self, imported: ImportedRuns) -> None:
        """Add the imported run records the session's ledger lacks (by ``run_id``)."""
        known = {record.run_id for record in self._runs(imported.session_id, _ALL_RUNS)}
        add_messages = cast(Any, self).add_messages  # StoreBase's, which checks the record
        for record in imported.runs:
            if record.run_id not in known:
                add_messages(imported.session_id, [], run=record)
                known.add(record.run_id)

    def _known(self, session_ids: Iterable[str]) -> list[str]:
        """``session_ids`` without repeats, once every one is known to exist."""
        if isinstance(session_ids, str):
            raise TypeError(f"session_ids must be a list of ids, not a str: {session_ids!r}")
        wanted = list(dict.fromkeys(session_ids))
        for session_id in wanted:
            check_session_id(session_id)

        missing = self._jsonl_missing(wanted)
        if missing:
            raise ValueError(f"no session {missing[0]!r} to export")
        return wanted

    def import_jsonl(
        self,
        lines: Iterable[str] | str | os.PathLike[str],
        *,
        on_conflict: Literal["error", "skip", "replace"] = "error",
        progress: Progress | None = None,
    ) -> int:
        """Read sessions written by ``export_jsonl`` and store them exactly as they were.

        Each session is checked whole, then stored in one transaction with its
        timestamps, metadata, message order and run records (which replace any the
        store had for it): all of it or none of it. Sessions
        before a failing one stay imported. Memory use is one session at a time. The
        run records of a session with no record of its own (a ``"runs"`` line) are added
        where the session's ledger lacks their ``run_id``, one at a time, creating no
        session; they count in neither the return value nor ``progress``.

        Args:
            lines: a text file open for reading, any iterable of its lines, or the
                path of a file (read as UTF-8). A ``str`` is a path, not a line.
            on_conflict: what to do with a session the database already has:
                ``"error"`` raises, ``"skip"`` keeps the stored one, ``"replace"``
                deletes the stored one and imports the file's (in one transaction).
            progress: called with 1 after each session is imported or skipped.

        Returns:
            How many sessions were imported (skipped ones are not counted).

        Raises:
            ValueError: a bad ``on_conflict``; a line that is not valid JSON or not a
                valid record, a session whose message lines do not match its header
                (the message names the line number; nothing of that session is stored);
                or, with ``on_conflict="error"``, a session already in the database
                (named); a path's file that is not UTF-8.
            OSError: a path's file cannot be read.
            StoreBusy, StoreClosed, StoreError: as for ``add_messages``.
        """
        if on_conflict not in _CONFLICTS:
            raise ValueError(
                f"on_conflict must be 'error', 'skip' or 'replace', got {on_conflict!r}"
            )
        if isinstance(lines, (str, os.PathLike)):
            with open(lines, encoding="utf-8") as fp:
                return self.import_jsonl(fp, on_conflict=on_conflict, progress=progress)
        imported = 0
        current: ImportedSession | ImportedRuns | None = None
        counts = Trailer()
        ended = 0  # the trailer's line number, once read

        def flush(session: ImportedSession | ImportedRuns) -> None:
            nonlocal imported
            if isinstance(session, ImportedRuns):
                self._jsonl_store_runs(session)
                return
            if len(session.rows) != session.message_count:
                raise ValueError(
                    f"line {session.line}: session {session.session_id!r} declares "
                    f"{session.message_count} messages but {len(session.rows)} follow"
                )
            if self._jsonl_store(session, on_conflict):
                imported += 1
            if progress is not None:
                progress(1)

        number = 0
        for number, line in enumerate(lines, 1):  # noqa: B007 - used after the loop
            if not line.strip():
                continue
            try:
                record = _parse(line)
            except ValueError as exc:
                if not line.endswith("\n"):  # only the last line can lack its newline
                    raise ValueError(
                        f"line {number}: the file ends in the middle of a record: it was "
                        "cut short (an interrupted export or copy)"
                    ) from None
                raise ValueError(f"line {number}: not valid JSON ({exc})") from None
            kind = record.get("type") if isinstance(record, dict) else None
            if ended:
                raise ValueError(f"line {number}: a line after the export's end (line {ended})")
            if kind == Trailer.KIND:
                if current is not None:
                    flush(current)
                    current = None
                counts.check(record, number)
                ended = number
            elif kind == "session":
                if current is not None:
                    flush(current)
                current = _header(record, number)
                counts.seen(record)
            elif kind == "runs":
                if current is not None:
                    flush(current)
                current = _runs_header(record, number)
                counts.seen(record)
            elif kind in ("message", "compaction"):
                session = _in_a_session(current, kind, number)
                (_message if kind == "message" else _compaction)(record, number, session)
                counts.seen(record)
            elif kind == "run":
                if current is None:
                    raise ValueError(f"line {number}: a run line before any session header")
                _run(record, number, current)
                counts.seen(record)
            else:
                raise ValueError(
                    f"line {number}: expected a JSON object with type 'session', 'message', "
                    "'run', 'runs' or 'compaction'"
                )
        if current is not None:
            flush(current)
        counts.check_end(bool(ended), number)
        return imported
