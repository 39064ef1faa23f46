"""``agentsession keygen | rotate-keys``: the master keys of an encrypted database.

See ``docs/encryption.md``. The keys are read from ``AGENTSESSION_KEY`` (the primary)
and ``AGENTSESSION_OLD_KEYS`` (older ones, separated by commas), never from a flag, so
they stay out of the shell's history and the process list.
"""

from __future__ import annotations

import click

from ..encryption import generate_key
from ._db import KEY_ENV, OLD_KEYS_ENV, open_store, resolve_db
from .history import _caller_errors, _progress
from .inspecting import db_option

__all__ = ("COMMANDS",)


@click.command()
def keygen() -> None:
    """Print a new random master key (32 bytes, base64) for AGENTSESSION_KEY.

    Keep it in a secrets manager or the environment, never in the database or its
    backups: without it nothing encrypted with it can be read again.
    """
    click.echo(generate_key())


@click.command("rotate-keys")
@db_option
@click.option(
    "--batch",
    default=500,
    show_default=True,
    type=click.IntRange(min=1),
    help="Data keys re-wrapped per step.",
)
def rotate_keys(db: str | None, batch: int) -> None:
    """Re-wrap every session's data key under AGENTSESSION_KEY.

    Put the new key in AGENTSESSION_KEY and the old ones in AGENTSESSION_OLD_KEYS
    (comma-separated); messages are not re-encrypted, only the data keys. Safe to stop
    and run again: it goes on where it was. Afterwards the old keys can be dropped.
    """
    target = resolve_db(db)
    with open_store(target) as store, _caller_errors():
        key_store = store.key_store
        if key_store is None:
            raise click.ClickException(
                f"{target} is not opened encrypted: set {KEY_ENV} (and {OLD_KEYS_ENV}) to "
                "rotate its keys"
            )
        with _progress(key_store.count(), "Re-wrapping data keys") as bar:
            rotated = store.rotate_keys(batch=batch, progress=bar.update)
    click.echo(f"Re-wrapped {rotated} data keys under {KEY_ENV}.")


COMMANDS = (keygen, rotate_keys)
