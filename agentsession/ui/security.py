"""What keeps the inspector private: the per-start token, the Host check, CSRF, headers.

``Guard`` wraps the whole application (static files included), so no handler can forget
a check. A request passes only if its ``Host`` header names the bound address (DNS
rebinding) and it carries the start's token: as ``?token=`` on the first visit (the
answer sets a cookie and redirects to the same address without the token, so the token
leaves the address bar and the history) or as that cookie afterwards. Anything else gets
403 and no data. Every answer carries a Content-Security-Policy allowing scripts, styles
and images from this server only (no inline script), and is never cached.

Changes are POSTs carrying the start's CSRF token as a form field (``check_post``);
GETs change nothing.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

__all__ = (
    "CSP",
    "Guard",
    "allowed_hosts",
    "check_post",
    "is_loopback",
    "new_token",
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Only this server's own scripts, styles and images; no inline script, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

_WILDCARDS = ("0.0.0.0", "::", "")


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def allowed_hosts(host: str, port: int) -> frozenset[str] | None:
    """The ``Host`` headers a server bound to ``host``:``port`` accepts (lower case).

    A loopback address also accepts the other loopback names (``localhost``,
    ``127.0.0.1``, ``[::1]``) on that port. A wildcard address (``0.0.0.0``, ``::``)
    cannot know the names it is reached by: ``None``, no Host check (the token still
    guards every request).
    """
    if host in _WILDCARDS:
        return None
    names = {_netloc(host.lower(), port)}
    if is_loopback(host):
        names |= {_netloc(name, port) for name in ("localhost", "127.0.0.1", "::1")}
    return frozenset(names)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


class Guard:
    """ASGI middleware: the Host check, the token, and the security headers.

    Args:
        app: the application to guard.
        token: the per-start token.
        hosts: what ``allowed_hosts`` returned for the bound address.
        cookie: the cookie's name (one per port, since cookies ignore ports).

    Thread-safe: it keeps no state between requests.
    """

    def __init__(self, app: ASGIApp, *, token: str, hosts: frozenset[str] | None, cookie: str):
        self.app = app
        self.token = token
        self.hosts = hosts
        self.cookie = cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers[name] = value
            await send(message)

        response = self._refusal(scope)
        if response is None:
            await self.app(scope, receive, send_with_headers)
        else:
            await response(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        """The answer to a request that may not pass, or ``None`` if it may."""
        request = Request(scope)
        host = request.headers.get("host", "").lower()
        if self.hosts is not None and host not in self.hosts:
            return PlainTextResponse(
                "Forbidden: this server answers only to the address it printed.", 403
            )
        given = request.query_params.get("token")
        if given is not None:
            if not _same(given, self.token):
                return PlainTextResponse("Forbidden: wrong token.", 403)
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            # One leading slash: "//host/..." would send the browser to another site.
            target = "/" + request.url.path.lstrip("/") + (f"?{urlencode(rest)}" if rest else "")
            redirect = RedirectResponse(target, 303)
            redirect.set_cookie(self.cookie, self.token, httponly=True, samesite="strict")
            return redirect
        if not _same(request.cookies.get(self.cookie, ""), self.token):
            return PlainTextResponse(
                "Forbidden: open the address 'agentsession ui' printed (it holds the token).",
                403,
            )
        return None


def check_post(headers: Headers, form_token: Any, csrf: str, hosts: frozenset[str] | None) -> bool:
    """Whether a POST may change anything: its form's ``csrf`` field is the start's CSRF
    token, and its ``Origin`` (when the browser sent one) is this server."""
    if not isinstance(form_token, str) or not _same(form_token, csrf):
        return False
    origin = headers.get("origin")
    if origin is None or hosts is None:
        return True
    return urlsplit(origin).netloc.lower() in hosts
