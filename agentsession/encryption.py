"""Encryption at rest: the master keys (``Encryption``) and the crypto they are used by.

Envelope encryption with AES-256-GCM (the ``cryptography`` package, extra
``agentsession[encryption]``): every session has a data key of its own, random, kept
*wrapped* (encrypted) by the primary master key in a key store apart from the messages
(see ``protocol.KeyStore``); messages and metadata values are encrypted with the
session's data key. The store side of this is ``stores.encrypted``; see
``docs/encryption.md`` for the threat model.

A master key is 32 random bytes, given as bytes or as base64 / hex text
(``generate_key()`` makes one). Keys are told apart by a fingerprint of the key itself,
so the names in a key ring are only labels: a store first written with
``Encryption(old)`` reads under ``Encryption({"k2": new, "k1": old}, primary="k2")``.

Every ciphertext binds what it belongs to as associated data (the session id, and for a
metadata value its key), so a row copied into another session does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._extras import require
from .exceptions import DecryptionError

if TYPE_CHECKING:
    from .protocol import KeyStore

__all__ = ("KEY_BYTES", "DataKey", "Encryption", "generate_key", "parse_key")

#: The length of every key: AES-256.
KEY_BYTES = 32
_NONCE = 12
_ID = 8
#: Wrapped data keys are ``"1.<master fingerprint>.<data key id>.<base64>"``.
_RECORD = re.compile(r"1\.([0-9a-f]{16})\.([0-9a-f]{16})\.([A-Za-z0-9+/=]+)\Z")


def generate_key() -> str:
    """A new random master key, as base64 text (what ``agentsession keygen`` prints)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def parse_key(key: Any, name: str = "key") -> bytes:
    """``key`` as 32 bytes: it may be bytes, or base64 or hex text of 32 bytes.

    Raises:
        TypeError: not bytes or str.
        ValueError: not 32 bytes, nor base64 / hex text of 32 bytes (the message gives
            the length found, never the key).
    """
    if isinstance(key, (bytes, bytearray)):
        raw = bytes(key)
    elif isinstance(key, str):
        text = key.strip()
        raw = b""
        if len(text) == 2 * KEY_BYTES:
            try:
                raw = bytes.fromhex(text)
            except ValueError:
                raw = b""
        if not raw:
            try:
                raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(
                    f"{name} must be 32 bytes, or their base64 or hex text; got text of "
                    f"{len(text)} characters that is neither"
                ) from None
    else:
        raise TypeError(f"{name} must be bytes or str (base64 or hex), not {type(key).__name__}")
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{name} must be {KEY_BYTES} bytes (AES-256), got {len(raw)}")
    return raw


def _fingerprint(key: bytes) -> str:
    # A keyed hash of a fixed text: tells keys apart without revealing anything of them.
    return hmac.new(key, b"agentsession master key fingerprint", hashlib.sha256).hexdigest()[:16]


def _wrap_aad(session_id: str, key_id: str) -> bytes:
    return (
        b"agentsession data key\x00"
        + session_id.encode("utf-8", "surrogatepass")
        + b"\x00"
        + (key_id.encode("ascii"))
    )


class DataKey:
    """One session's data key, unwrapped: encrypts and decrypts its messages and metadata.

    Thread safety: immutable; safe to share.
    """

    __slots__ = ("_aead", "_id", "key_id", "session_id")

    def __init__(self, session_id: str, key_id: str, aead: Any) -> None:
        self.session_id = session_id
        #: A random id of this data key, written in every ciphertext it makes, so a
        #: ciphertext of a shredded key is told apart from a damaged one.
        self.key_id = key_id
        self._id = bytes.fromhex(key_id)
        self._aead = aead

    def seal(self, plaintext: bytes, aad: bytes) -> str:
        """Encrypt ``plaintext``, bound to ``aad``; return ``"as1:" + base64`` text."""
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, plaintext, aad)
        return "as1:" + base64.b64encode(self._id + nonce + sealed).decode()

    def open(self, text: str, aad: bytes, what: str = "message", name: Any = None) -> bytes:
        """Decrypt text made by ``seal`` with the same ``aad``.

        Raises:
            DecryptionError: not a ciphertext, made by another data key, or altered;
                the message names the item (``what`` and ``name``) and the session.
        """
        # Lenient base64 (the faster decoder): any alteration fails authentication below.
        try:
            raw = memoryview(binascii.a2b_base64(text[4:]))
        except (binascii.Error, ValueError, TypeError):
            raw = memoryview(b"")
        if not (text[:4] == "as1:" and len(raw) >= _ID + _NONCE + 16):
            problem = "damaged" if text[:4] == "as1:" else "not encrypted (never read)"
            raise DecryptionError(f"{self._where(what, name)} is {problem}")
        if raw[:_ID] != self._id:
            raise DecryptionError(
                f"{self._where(what, name)} was encrypted with data key {raw[:_ID].hex()}, "
                f"not the session's data key {self.key_id} (a row from another session, or "
                "of a shredded key)"
            )
        try:
            plaintext: bytes = self._aead.decrypt(raw[_ID : _ID + _NONCE], raw[_ID + _NONCE :], aad)
        except Exception as exc:  # cryptography's InvalidTag: altered, or bound elsewhere
            raise DecryptionError(
                f"{self._where(what, name)} does not decrypt: it was altered, or belongs to "
                "another session"
            ) from exc
        return plaintext

    def _where(self, what: str, name: Any) -> str:
        return f"{what} {name!r} of session {self.session_id!r}"


class Encryption:
    """The master keys of an encrypted store: one primary and any older ones.

    ``Encryption(key)`` holds one key; ``Encryption({"k2": new, "k1": old},
    primary="k2")`` holds several, new data keys being wrapped by the primary and the
    others only unwrapping (until ``rotate_keys`` re-wraps everything under the
    primary). Keys are 32 bytes or their base64 / hex text; keep them out of the
    database (an environment variable, a secrets manager).

    Args:
        keys: one key, or a dict of names to keys.
        primary: the name of the primary key (needed with more than one key).
        key_store: where the wrapped data keys live (a ``protocol.KeyStore``);
            ``None``: the store's default place (a key file beside a SQLite database,
            the ``agentsession_keys`` table, the ``<prefix>:keys`` hash).

    Raises:
        TypeError: a key that is not bytes or str, names that are not str, or a
            ``key_store`` that is not a key store.
        ValueError: a key that is not 32 bytes, an empty ring, two names for one key,
            or ``primary`` missing or not a name in the ring.
        MissingDependencyError: the ``cryptography`` package is not installed
            (``pip install 'agentsession[encryption]'``).

    Thread safety: immutable; one ``Encryption`` may serve any number of stores.
    """

    def __init__(
        self,
        keys: bytes | str | Mapping[str, bytes | str],
        *,
        primary: str | None = None,
        key_store: KeyStore | None = None,
    ) -> None:
        require("cryptography", "encryption", "Encryption")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aesgcm = AESGCM
        if isinstance(keys, Mapping):
            if not keys:
                raise ValueError("keys must hold at least one key")
            for name in keys:
                if not isinstance(name, str):
                    raise TypeError(f"key names must be str, got {name!r}")
            named = {name: parse_key(key, f"key {name!r}") for name, key in keys.items()}
            if primary is None:
                if len(named) > 1:
                    raise ValueError(
                        f"primary must name one of the keys {sorted(named)} when there are several"
                    )
                primary = next(iter(named))
            if primary not in named:
                raise ValueError(f"primary {primary!r} is not one of the keys {sorted(named)}")
        else:
            if primary is not None:
                raise ValueError("primary names a key of a dict of keys; one key needs none")
            named = {"key": parse_key(keys)}
            primary = "key"
        self._keys: dict[str, Any] = {}
        self._names: dict[str, str] = {}
        for name, raw in named.items():
            found = _fingerprint(raw)
            if found in self._keys:
                raise ValueError(f"keys {self._names[found]!r} and {name!r} are the same key")
            self._keys[found] = self._aesgcm(raw)
            self._names[found] = name
        #: The fingerprint of the primary key (16 hex digits).
        self.primary = _fingerprint(named[primary])
        if key_store is not None and not all(
            callable(getattr(key_store, method, None)) for method in ("get", "add", "delete")
        ):
            raise TypeError(f"key_store must be a KeyStore, got {key_store!r:.80}")
        self.key_store = key_store

    def __repr__(self) -> str:
        names = ", ".join(f"{name}={fp}" for fp, name in self._names.items())
        return f"Encryption(primary={self._names[self.primary]!r}, keys: {names})"

    @property
    def fingerprints(self) -> dict[str, str]:
        """The fingerprint of each key, by name."""
        return {name: fp for fp, name in self._names.items()}

    def new_data_key(self, session_id: str) -> tuple[DataKey, str]:
        """A fresh data key for ``session_id`` and its record, wrapped by the primary."""
        raw = self._aesgcm.generate_key(bit_length=256)
        key_id = os.urandom(_ID).hex()
        return DataKey(session_id, key_id, self._aesgcm(raw)), self._wrap(session_id, key_id, raw)

    def _wrap(self, session_id: str, key_id: str, raw: bytes) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._keys[self.primary].encrypt(nonce, raw, _wrap_aad(session_id, key_id))
        return f"1.{self.primary}.{key_id}.{base64.b64encode(nonce + sealed).decode()}"

    def _unwrap_raw(self, session_id: str, record: str) -> tuple[str, str, bytes]:
        match = _RECORD.match(record) if isinstance(record, str) else None
        if match is None:
            raise DecryptionError(f"the data key of session {session_id!r} is damaged")
        master, key_id, text = match.groups()
        kek = self._keys.get(master)
        if kek is None:
            raise DecryptionError(
                f"the data key of session {session_id!r} is wrapped by master key {master}, "
                "which is not among this Encryption's keys ("
                + ", ".join(f"{name}={fp}" for fp, name in self._names.items())
                + ")"
            )
        raw = base64.b64decode(text)
        try:
            key = kek.decrypt(raw[:_NONCE], raw[_NONCE:], _wrap_aad(session_id, key_id))
        except Exception as exc:
            raise DecryptionError(
                f"the data key of session {session_id!r} does not unwrap: it was altered, "
                "or belongs to another session"
            ) from exc
        return master, key_id, key

    def unwrap(self, session_id: str, record: str) -> DataKey:
        """The data key of ``session_id`` from its stored ``record``.

        Raises:
            DecryptionError: the record is damaged, wrapped by a key not in this ring,
                or bound to another session.
        """
        _, key_id, raw = self._unwrap_raw(session_id, record)
        return DataKey(session_id, key_id, self._aesgcm(raw))

    def rewrap(self, session_id: str, record: str) -> str | None:
        """``record`` wrapped by the primary key instead; ``None`` if it already is.

        Raises:
            DecryptionError: as for ``unwrap``.
        """
        master, key_id, raw = self._unwrap_raw(session_id, record)
        return None if master == self.primary else self._wrap(session_id, key_id, raw)

    @staticmethod
    def wrapped_by(record: str) -> str | None:
        """The fingerprint of the master key that wraps ``record`` (``None``: damaged)."""
        match = _RECORD.match(record) if isinstance(record, str) else None
        return None if match is None else match.group(1)
