"""Serving the inspector: bind, print the address, open the browser, stop on Ctrl-C.

``bind`` makes the listening socket before anything is printed, so the printed address
(with the port the system chose for ``port=0``) already answers. ``serve`` runs uvicorn
on it until Ctrl-C (or SIGTERM) and returns once the server has shut down.
"""

from __future__ import annotations

import socket
import threading
import webbrowser
from collections.abc import Awaitable, Callable

import uvicorn

from .security import allowed_hosts

__all__ = ("address", "bind", "serve")


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port`` (``0``: any free port).

    Raises:
        OSError: the address cannot be used (in use, not this machine's, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it a kept-alive connection waits
        # ~40 ms per answer (Nagle holding the body until the headers are acknowledged).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def address(sock: socket.socket, host: str) -> tuple[str, int, frozenset[str] | None]:
    """``(base URL, port, accepted Host headers)`` of a socket ``bind`` made for ``host``.

    A wildcard host is shown as ``127.0.0.1``, which reaches it from this machine.
    """
    port = int(sock.getsockname()[1])
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    netloc = f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}"
    return f"http://{netloc}/", port, allowed_hosts(host, port)


def serve(
    app: Callable[..., Awaitable[None]],
    sock: socket.socket,
    *,
    open_url: str | None = None,
) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C or SIGTERM; open ``open_url`` in a browser.

    Returns after a clean shutdown (a Ctrl-C is consumed, not re-raised).
    """
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if open_url is not None:
        threading.Thread(target=webbrowser.open, args=(open_url,), daemon=True).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, once shut down
        pass
