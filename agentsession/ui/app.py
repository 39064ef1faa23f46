"""The inspector's pages, over any ``Store``: sessions, a session, search, and changes.

``create_app(store, settings)`` returns a Starlette application wrapped in
``security.Guard``. Pages that only read are plain functions (Starlette runs them in
its worker threads, which the stores allow); changes are POST handlers that check the
CSRF token first and exist only with ``allow_writes``. Caller mistakes a store raises
(``ValueError``, ``TypeError``) become a 400 page naming the bad value; nothing is
changed by a request the store refused.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..exceptions import NotSupportedError
from ..protocol import Store
from . import ledger
from .security import Guard, check_post
from .transcript import build_transcript, highlighted

__all__ = ("PAGE_SIZE", "TRANSCRIPT_PAGE", "Settings", "create_app", "session_url")

#: Sessions per page of the list.
PAGE_SIZE = 50
#: Messages a session page shows at first (the newest); "earlier" links add as many.
TRANSCRIPT_PAGE = 200
#: Search hits shown.
SEARCH_LIMIT = 50

#: Put around matched words by the store, then cut out again: private-use characters,
#: which text hardly holds (a stray one changes the highlighting only, never escaping).
_MARKS = ("\ue000", "\ue001")


@dataclass(frozen=True)
class Settings:
    """How one start of the inspector behaves.

    Attributes:
        token: the per-start token every request needs.
        csrf: the per-start token every POST needs in its form.
        hosts: the ``Host`` headers accepted (``security.allowed_hosts``).
        cookie: the token cookie's name.
        allow_writes: offer and accept fork, rewind, clear, metadata edits and download.
        database: how the pages name the database (a path, or a URL, password masked).
    """

    token: str
    csrf: str
    hosts: frozenset[str] | None
    cookie: str
    allow_writes: bool
    database: str


def session_url(session_id: str, **params: Any) -> str:
    """The address of a session's page (any id, however odd, survives the trip)."""
    return "/session?" + urlencode({"id": session_id, **params})


def _local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _metadata_filter(values: list[str]) -> dict[str, Any]:
    """``key=value`` filters; a value that parses as a JSON scalar is that value.

    Raises:
        ValueError: an entry without ``=``.
    """
    wanted: dict[str, Any] = {}
    for entry in values:
        if not entry.strip():
            continue
        key, sep, text = entry.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"metadata filter {entry!r} is not key=value")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        wanted[key.strip()] = value if not isinstance(value, (dict, list)) else text
    return wanted


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {text!r}") from None


def create_app(store: Store, settings: Settings) -> Guard:
    """The inspector over ``store``: a Starlette app inside ``security.Guard``.

    ``store`` must stay open while the app serves; the caller closes it.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files(__package__).joinpath("templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(
        settings=settings,
        session_url=session_url,
        local=_local,
        has_ledger=ledger.has_ledger(store),
    )
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False, indent=2)
    templates = Jinja2Templates(env=env)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, context, status_code=status)

    def problem(request: Request, message: str, status: int = 400) -> Response:
        return page(request, "problem.html", status, message=message)

    def sessions(request: Request) -> Response:
        filters = request.query_params.getlist("meta")
        cursor = request.query_params.get("cursor") or None
        try:
            wanted = _metadata_filter(filters)
            found = store.list_sessions_page(
                limit=PAGE_SIZE, cursor=cursor, metadata=wanted or None
            )
        except (ValueError, TypeError) as exc:
            return problem(request, str(exc))
        rows = [(info, ledger.total_tokens(store, info.session_id)) for info in found.sessions]
        next_url = None
        if found.next_cursor is not None:
            next_url = "/?" + urlencode(
                [("cursor", found.next_cursor), *(("meta", f) for f in filters)]
            )
        return page(
            request,
            "sessions.html",
            rows=rows,
            filters=[f for f in filters if f.strip()],
            next_url=next_url,
            first_page=cursor is None,
        )

    def search(request: Request) -> Response:
        query = request.query_params.get("q", "")
        hits: list[Any] = []
        notice = None
        try:
            found = store.search(query, limit=SEARCH_LIMIT, highlight=_MARKS)
        except NotSupportedError:
            notice = "This database's engine has no full-text search, so search is not available."
        except (ValueError, TypeError) as exc:
            return problem(request, str(exc))
        else:
            hits = [
                (
                    hit,
                    highlighted(hit.snippet, _MARKS),
                    session_url(hit.session_id, at=hit.position) + f"#m{hit.position}",
                )
                for hit in found
            ]
        return page(request, "search.html", query=query, hits=hits, notice=notice)

    def session(request: Request) -> Response:
        session_id = request.query_params.get("id", "")
        try:
            info = store.session_info(session_id)
            show = _int_param(request, "show", TRANSCRIPT_PAGE) or TRANSCRIPT_PAGE
            at = _int_param(request, "at", None)
        except (ValueError, TypeError) as exc:
            return problem(request, str(exc))
        if info is None:
            return problem(request, f"There is no session {session_id!r}.", 404)
        count = info.message_count
        if at is not None:
            show = max(show, count - at + 1)
        show = max(1, min(show, count or 1))
        messages = store.get_messages(session_id, show, tool_safe=False) if count else []
        first = count - len(messages) + 1
        earlier = None
        if first > 1:
            earlier = session_url(session_id, show=show + TRANSCRIPT_PAGE)
        return page(
            request,
            "session.html",
            info=info,
            entries=build_transcript(messages, first),
            shown=len(messages),
            earlier=earlier,
            tokens=ledger.total_tokens(store, session_id),
            bars=ledger.chart(store, session_id),
            chart_size=(ledger.CHART_WIDTH, ledger.CHART_HEIGHT),
        )

    def export(request: Request) -> Response:
        if not settings.allow_writes:
            return problem(request, "Download needs 'agentsession ui --allow-writes'.", 403)
        session_id = request.query_params.get("id", "")
        try:
            info = store.session_info(session_id)
        except (ValueError, TypeError) as exc:
            return problem(request, str(exc))
        if info is None:
            return problem(request, f"There is no session {session_id!r}.", 404)
        buffer = io.StringIO()
        store.export_jsonl(buffer, session_ids=[session_id])
        return Response(
            buffer.getvalue(),
            media_type="application/jsonl",
            headers={
                "content-disposition": "attachment; filename=session.jsonl; "
                f"filename*=UTF-8''{quote(session_id, safe='')}.jsonl"
            },
        )

    def change(action: Callable[[Any], Response]) -> Callable[[Request], Any]:
        """A POST handler: CSRF first, then ``action(form)`` in a worker thread."""

        async def handler(request: Request) -> Response:
            if not settings.allow_writes:
                return PlainTextResponse(
                    "Forbidden: read-only (start 'agentsession ui --allow-writes').",
                    403,
                )
            form = await request.form()
            if not check_post(request.headers, form.get("csrf"), settings.csrf, settings.hosts):
                return PlainTextResponse("Forbidden: missing or wrong CSRF token.", 403)
            try:
                return await run_in_threadpool(action, form)
            except (ValueError, TypeError) as exc:
                return problem(request, str(exc))

        return handler

    def _id(form: Any) -> str:
        return str(form.get("id", ""))

    def rewind(form: Any) -> Response:
        store.rewind(_id(form), 1)
        return RedirectResponse(session_url(_id(form)), 303)

    def fork(form: Any) -> Response:
        new_id = str(form.get("new_id", "")).strip()
        at_text = str(form.get("at", "")).strip()
        try:
            at = int(at_text) if at_text else None
        except ValueError:
            raise ValueError(f"'fork at' must be a message number, got {at_text!r}") from None
        store.fork(_id(form), new_id, at=at)
        return RedirectResponse(session_url(new_id), 303)

    def clear(form: Any) -> Response:
        store.clear_session(_id(form))
        return RedirectResponse("/", 303)

    def metadata(form: Any) -> Response:
        text = str(form.get("metadata", ""))
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"metadata is not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise TypeError(f"metadata must be a JSON object, got {text.strip()[:60]!r}")
        store.set_metadata(_id(form), value)
        return RedirectResponse(session_url(_id(form)), 303)

    static = StaticFiles(directory=str(files(__package__).joinpath("static")))
    app = Starlette(
        routes=[
            Route("/", sessions),
            Route("/search", search),
            Route("/session", session),
            Route("/export", export),
            Route("/rewind", change(rewind), methods=["POST"]),
            Route("/fork", change(fork), methods=["POST"]),
            Route("/clear", change(clear), methods=["POST"]),
            Route("/metadata", change(metadata), methods=["POST"]),
            Mount("/static", static, name="static"),
        ]
    )
    return Guard(app, token=settings.token, hosts=settings.hosts, cookie=settings.cookie)
