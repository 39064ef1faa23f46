"""``agentsession ui``: the session inspector in the browser (the ``ui`` extra).

The web stack is imported only when the command runs; without it the command prints the
``pip install`` line. See ``agentsession.ui`` and ``docs/ui.md``.
"""

from __future__ import annotations

import click

from .._extras import require
from ._db import open_store, resolve_db
from .inspecting import db_option

__all__ = ("ui",)

#: What the ``ui`` extra brings, by module name.
UI_MODULES = ("starlette", "jinja2", "uvicorn", "python_multipart")


@click.command()
@db_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but a loopback address is reachable from "
    "other machines (a warning says so).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option("--no-browser", is_flag=True, help="Do not open a browser; just print the address.")
@click.option(
    "--allow-writes",
    is_flag=True,
    help="Offer fork, rewind, clear, metadata edits and download (read-only without it).",
)
def ui(db: str | None, host: str, port: int, no_browser: bool, allow_writes: bool) -> None:
    """Inspect sessions in the browser, on this machine only by default.

    Prints the address to open (it holds a token made for this start: every request
    needs it) and opens it unless --no-browser. Ctrl-C stops the server.
    """
    for module in UI_MODULES:
        require(module, "ui", "agentsession ui")
    from ..ui import Settings, create_app
    from ..ui.security import is_loopback, new_token
    from ..ui.server import address, bind, serve

    target = resolve_db(db)
    with open_store(target) as store:
        try:
            sock = bind(host, port)
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on --host {host} --port {port}: {exc.strerror or exc}"
            ) from exc
        base, bound_port, hosts = address(sock, host)
        if not is_loopback(host):
            click.echo(
                f"Warning: --host {host} is reachable from other machines; anyone with the "
                "address below can read these sessions"
                + (" and change them." if allow_writes else "."),
                err=True,
            )
        token = new_token()
        settings = Settings(
            token=token,
            csrf=new_token(),
            hosts=hosts,
            cookie=f"agentsession-ui-{bound_port}",
            allow_writes=allow_writes,
            database=str(target),
        )
        url = f"{base}?token={token}"
        mode = "changes allowed" if allow_writes else "read-only"
        click.echo(f"agentsession ui ({mode}) on {target}: open {url}  (Ctrl-C stops)")
        with sock:
            serve(create_app(store, settings), sock, open_url=None if no_browser else url)
    click.echo("agentsession ui stopped.")
