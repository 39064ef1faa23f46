"""Messages to JSON text and back: the only place encoding and decoding errors arise.

A message is a JSON object (a ``dict`` with string keys) such as the Responses API input
items the Agents SDK produces. Encoding is strict (no NaN or infinities, no objects the
``json`` module would have to guess about) so that what is stored reads back identical.
"""

from __future__ import annotations

import json
import logging
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

__all__ = (
    "EncodedMessages",
    "decode_messages",
    "encode_and_copy",
    "encode_messages",
    "message_text",
)

logger = logging.getLogger("agentsession")

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
# For the rare message holding a lone surrogate, which UTF-8 (and so SQLite) cannot hold
# but a \udxxx escape can; it reads back identical.
_ascii_encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))

#: Messages nested deeper than this are refused, so that every caller can read back what
#: was stored however deep its own stack is (json decodes recursively).
MAX_DEPTH = 256

_repr = reprlib.Repr()
_repr.maxlevel = 4
_repr.maxstring = _repr.maxother = 60


class _Problem:
    """What ``_find_bad_value`` returns for a fault that is not a value of its own."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


_NONE_KEY = _Problem("None as a key")
_TOO_DEEP = _Problem(f"nesting deeper than {MAX_DEPTH} levels")
_decoder = json.JSONDecoder()
_decode = _decoder.decode
#: Reads a stored row about 2.4x faster than the ``json`` module (60 small items: 61 us
#: against 146 us here), and like it keeps integers of any size exact. What it refuses
#: (a ``\udxxx`` escape of a lone surrogate, which ``json`` reads back) takes the
#: ``json`` path.
_fast_decode = msgspec.json.Decoder().decode
_fast_encode = msgspec.json.Encoder().encode


def _describe(value: Any, limit: int = 80) -> str:
    try:
        text = _repr.repr(value)
    except Exception:  # an int past the digit limit, a broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _find_bad_value(value: Any, depth: int = 0) -> Any:
    """Return the first value inside ``value`` that would not read back identical.

    JSON-ready means: dicts with string keys, lists, strings, finite floats, ints,
    booleans and None, nested at most ``MAX_DEPTH`` deep. Anything else (bytes, sets,
    tuples, objects, NaN, infinities, or a non-string key) is returned, a ``None`` key as
    ``_NONE_KEY`` and too deep a value as ``_TOO_DEEP``; ``None`` means the whole value is
    fine.
    """
    if depth > MAX_DEPTH:
        return _TOO_DEEP
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return value
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if not isinstance(key, str):
                return _NONE_KEY if key is None else key
            bad = _find_bad_value(inner, depth + 1)
            if bad is not None:
                return bad
        return None
    if isinstance(value, list):
        for inner in value:
            bad = _find_bad_value(inner, depth + 1)
            if bad is not None:
                return bad
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return None
    return value


class EncodedMessages(list):  # type: ignore[type-arg]
    """Messages together with their JSON texts (``texts``, one per message, in order),
    as ``encode_messages`` made them: a store writes the texts as they are instead of
    checking and encoding the messages again. Whoever changes the list keeps ``texts``
    in step (the bound session, which holds a run's items in one)."""

    __slots__ = ("texts",)

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def add(self, messages: Sequence[Any]) -> list[dict[str, Any]]:
        """Encode ``messages`` (as ``encode_messages``) and append private copies of
        them, decoded from their texts; return the copies.

        Raises:
            TypeError: as ``encode_messages``; nothing is appended.
        """
        texts, copies = encode_and_copy(messages)
        self.extend(copies)
        self.texts.extend(texts)
        return copies

    def pop(self, index: Any = -1) -> Any:
        self.texts.pop(index)
        return super().pop(index)

    def clear(self) -> None:
        self.texts.clear()
        super().clear()


def _too_deep(value: Any) -> bool:
    """Whether a decoded JSON value holds anything nested deeper than ``MAX_DEPTH``
    (as ``_find_bad_value`` counts: the message is at depth 0). Iterative, and it
    visits only the containers."""
    stack = [(value, 0)]
    while stack:
        current, depth = stack.pop()
        children = current.values() if type(current) is dict else current
        if children and depth >= MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return False


def _encode_fast(message: Any) -> tuple[str, dict[str, Any]] | None:
    """A message's text and private copy, when it reads back identical as it is: it is
    encoded with msgspec and decoded again, and it is fine when the copy equals it
    (NaN, infinities, tuples, non-string keys, bytes and other objects all come back
    different, or fail to encode). ``None``: ``_encode_one`` must decide, and name what
    is wrong."""
    if type(message) is not dict:
        return None
    try:
        raw = _fast_encode(message)
        copy = _fast_decode(raw)
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.MsgspecError):
        return None  # a lone surrogate, an object msgspec cannot encode
    # Brackets bound the nesting depth from above; only past MAX_DEPTH of them (a long
    # string of brackets, say) is the depth worked out, before == recurses through it.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _too_deep(copy):
        return None
    if copy != message:
        return None
    return raw.decode("utf-8"), copy


def encode_and_copy(messages: Sequence[Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """``encode_messages``, and a private copy of each message decoded from its text
    (what a store will read back).

    Raises:
        TypeError: as ``encode_messages``.
    """
    if not isinstance(messages, (list, tuple)):
        raise TypeError(
            f"messages must be a list of JSON objects, not {type(messages).__name__}: "
            f"{_describe(messages)}"
        )
    texts: list[str] = []
    copies: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        done = _encode_fast(message)
        if done is None:
            text = _encode_one(index, message)
            done = (text, json.loads(text))
        texts.append(done[0])
        copies.append(done[1])
    return texts, copies


def encode_messages(messages: Sequence[Any]) -> list[str]:
    """Encode every message to JSON text, or raise before anything is stored.

    Args:
        messages: a list (or tuple) of JSON objects.

    Returns:
        One JSON text per message, in order.

    Raises:
        TypeError: ``messages`` is not a list or tuple, or one message is not a JSON
            object or holds a value JSON cannot represent (bytes, sets, arbitrary
            objects, NaN, infinities, non-string keys). The message names the item's
            index and the offending value.
    """
    return encode_and_copy(messages)[0]


def _encode_one(index: int, message: Any) -> str:
    """Message ``index`` of a call, encoded the slow way: walk it for what JSON cannot
    hold (and raise naming it), then encode it with the ``json`` module."""
    if not isinstance(message, Mapping):
        raise TypeError(
            f"message {index} must be a JSON object (dict), not "
            f"{type(message).__name__}: {_describe(message)}"
        )
    try:
        # The walk catches what json would silently change (non-string keys, tuples
        # read back as lists) as well as what it refuses.
        bad = _find_bad_value(message)
        if bad is None:
            text = _encoder.encode(message)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = _ascii_encoder.encode(message)
            return text
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(
            f"message {index} is not JSON-serializable ({exc}): {_describe(message)}"
        ) from exc
    what = bad if isinstance(bad, _Problem) else f"{_describe(bad)} ({type(bad).__name__})"
    raise TypeError(f"message {index} is not JSON-serializable: {what} in {_describe(message)}")


def decode_messages(rows: Iterable[tuple[Any, str]], where: str) -> list[dict[str, Any]]:
    """Decode stored JSON texts, skipping (and logging) any row that is corrupt.

    Args:
        rows: ``(row_key, json_text)`` pairs in the order they should be returned.
        where: names the session, for the log message.

    Returns:
        The decoded messages. A row that is not valid JSON, or not a JSON object, is left
        out with a warning on the ``agentsession`` logger, so it never hides the others.
    """
    messages: list[dict[str, Any]] = []
    for key, text in rows:
        try:
            message = _fast_decode(text)
        except (msgspec.DecodeError, TypeError, ValueError, RecursionError):
            message = None
        if type(message) is not dict:
            try:
                message = _decode(text)
            except (TypeError, ValueError, RecursionError):
                message = None
            if not isinstance(message, dict):
                logger.warning("skipping corrupt stored message %r in %s", key, where)
                continue
        messages.append(message)
    return messages


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def message_text(message: Mapping[str, Any]) -> str:
    """The words of a message that full-text search should find.

    A message's text content, a tool call's name and arguments, a tool output's text;
    '' for items with nothing to read (reasoning without summary, say).
    """
    parts: list[str] = []
    if "content" in message:
        parts.append(_content_text(message["content"]))
    for key in ("name", "arguments", "output"):
        value = message.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif key == "output" and isinstance(value, list):
            parts.append(_content_text(value))
    summary = message.get("summary")
    if isinstance(summary, list):
        parts.append(_content_text(summary))
    text = " ".join(part for part in parts if part)
    # Lone surrogates cannot be stored as UTF-8 text; search has no use for them.
    return text.encode("utf-8", "replace").decode("utf-8")
