"""A fake OpenAI Responses API server for tests (stdlib only).

``ResponsesServer`` listens on 127.0.0.1 (an ephemeral port) and answers
``POST /v1/responses`` well enough for the real ``openai.AsyncOpenAI`` client, driven
by the Agents SDK's ``OpenAIResponsesModel``, to work end to end: a full Response JSON
for plain requests, and a Server-Sent Events stream (chunked, keep-alive) when the body
has ``"stream": true``. Any other path answers 404 with an OpenAI-style error JSON.

Promises:

* Thread safety: every request is served on its own thread; the request log, the
  scripted-reply queue and id generation are guarded by one lock, so any number of
  clients on any threads (or event loops) may call the server at once.
* ``server.requests`` returns a snapshot of every parsed request body, in arrival order.
* Replies are deterministic: the default ``echo_responder`` answers
  ``"echo: {last user text} (seen {n} user messages)"``, or ``"tool said: {output}"``
  when the last input item is a ``function_call_output``.
* ``close()`` (or leaving the ``with`` block) stops the server, drops open keep-alive
  connections and joins the serving thread.

Typical use::

    with ResponsesServer(check_pairing=True) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
        server.script(tool_call("get_weather", {"city": "Paris"}))  # then echo replies
        ...
        assert server.requests[-1]["input"][-1]["type"] == "function_call_output"
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Item = dict[str, Any]
Responder = Callable[[dict[str, Any]], list[Item]]

_ids = itertools.count(1)
_ids_lock = threading.Lock()


def _next_id(prefix: str) -> str:
    with _ids_lock:
        return f"{prefix}_{next(_ids):06d}"


# --- output item constructors ---------------------------------------------------------


def text_reply(text: str) -> Item:
    """Builds an assistant ``message`` output item.

    Args:
        text: The message text.

    Returns:
        A Responses API output item dict with a unique ``id``.
    """
    return {
        "type": "message",
        "id": _next_id("msg"),
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def tool_call(name: str, arguments: dict[str, Any], call_id: str | None = None) -> Item:
    """Builds a ``function_call`` output item.

    Args:
        name: The function tool's name.
        arguments: The call's arguments; sent JSON-encoded, as the real API does.
        call_id: The ``call_id`` the SDK echoes in its ``function_call_output``;
            a unique one is made when omitted.

    Returns:
        A Responses API output item dict with a unique ``id``.
    """
    return {
        "type": "function_call",
        "id": _next_id("fc"),
        "call_id": call_id or _next_id("call"),
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


# --- reading request bodies -----------------------------------------------------------


def input_items(body: dict[str, Any]) -> list[Item]:
    """Returns the request's input as a list of items (a string input is one user message)."""
    raw = body.get("input", [])
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    return list(raw)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def user_texts(body: dict[str, Any]) -> list[str]:
    """Returns the text of every user message in the request's input, in order."""
    return [
        _text_of(item.get("content", ""))
        for item in input_items(body)
        if item.get("role") == "user" and item.get("type", "message") == "message"
    ]


def echo_responder(body: dict[str, Any]) -> list[Item]:
    """The default responder: echoes the last user text, or reports a tool's output.

    Args:
        body: The parsed request body.

    Returns:
        One ``message`` item: ``"tool said: {output}"`` if the last input item is a
        ``function_call_output``, else ``"echo: {last user text} (seen {n} user messages)"``.
    """
    items = input_items(body)
    if items and items[-1].get("type") == "function_call_output":
        return [text_reply(f"tool said: {items[-1].get('output')}")]
    texts = user_texts(body)
    last = texts[-1] if texts else ""
    return [text_reply(f"echo: {last} (seen {len(texts)} user messages)")]


def tool_responder(trigger: str, name: str, arguments: dict[str, Any]) -> Responder:
    """Makes a stateless responder that calls a tool when the user asks for it.

    When the last input item is a user message containing ``trigger``, the reply is a
    call to tool ``name``; everything else (including the follow-up request carrying the
    tool's output) is answered by ``echo_responder``. Being stateless, it is safe for
    many concurrent sessions, unlike the FIFO ``ResponsesServer.script``.

    Args:
        trigger: Substring of the user's text that makes the model call the tool.
        name: The function tool's name.
        arguments: The call's arguments.

    Returns:
        A responder for ``ResponsesServer(responder=...)``.
    """

    def respond(body: dict[str, Any]) -> list[Item]:
        items = input_items(body)
        last = items[-1] if items else {}
        if last.get("role") == "user" and trigger in _text_of(last.get("content", "")):
            return [tool_call(name, arguments)]
        return echo_responder(body)

    return respond


def pairing_error(body: dict[str, Any]) -> str | None:
    """Checks function calls and outputs pair up, as the real API insists.

    Returns:
        A message describing the first orphan ``function_call_output`` (no earlier
        ``function_call`` with its ``call_id``) or ``function_call`` (no later output),
        or ``None`` if the input is well paired.
    """
    calls: list[str] = []
    answered: set[str] = set()
    for item in input_items(body):
        call_id = str(item.get("call_id"))
        if item.get("type") == "function_call":
            calls.append(call_id)
        elif item.get("type") == "function_call_output":
            if call_id not in calls:
                return f"No tool call found for function call output with call_id {call_id}."
            answered.add(call_id)
    for call_id in calls:
        if call_id not in answered:
            return f"No tool output found for function call {call_id}."
    return None


# --- the server -----------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive handlers never block shutdown
    request_queue_size = 128  # many clients connect at once; the default backlog is 5


class ResponsesServer:
    """A threaded fake of ``POST /v1/responses``; see the module docstring.

    Args:
        responder: Maps a parsed request body to the response's output items;
            ``echo_responder`` by default. Scripted replies (``script``) take precedence.
        check_pairing: If true, answer 400 ``invalid_request_error`` when the input has
            an unpaired ``function_call`` or ``function_call_output``.
        hold_after_first_delta: If given and true for a streamed request's body, the
            stream stops after its first text delta until ``release()`` (or ``close()``)
            and then ends without completing: a reply a test can interrupt mid-way.
        usage: If given, called with the request's 1-based number to give the figures
            its response reports (``input_tokens``, ``output_tokens``, ``cached_tokens``,
            ``reasoning_tokens``; total is their input + output) instead of word counts.
            ``server.usages`` lists what each response reported, in arrival order.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        check_pairing: bool = False,
        hold_after_first_delta: Callable[[dict[str, Any]], bool] | None = None,
        usage: Callable[[int], dict[str, int]] | None = None,
    ):
        self.usage = usage
        self._usages: list[dict[str, Any]] = []
        self.responder: Responder = responder or echo_responder
        self.check_pairing = check_pairing
        self.hold_after_first_delta = hold_after_first_delta
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._scripted: deque[list[Item]] = deque()
        self._connections: set[socket.socket] = set()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._thread: threading.Thread | None = None
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # lifecycle

    def start(self) -> ResponsesServer:
        """Starts serving on a background thread; returns ``self``."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.01},  # how long close() waits for shutdown
                name="ResponsesServer",
                daemon=True,
            )
            self._thread.start()
        return self

    def release(self) -> None:
        """Lets every held stream (see ``hold_after_first_delta``) end."""
        self._release.set()

    def _held(self, events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for event in events:
            yield event
            if event["type"] == "response.output_text.delta":
                self._release.wait(timeout=60)
                return

    def close(self) -> None:
        """Stops serving, closes open connections and joins the server thread."""
        self.release()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> ResponsesServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # test-facing API

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A snapshot of every parsed request body received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def usages(self) -> list[dict[str, Any]]:
        """The ``usage`` object of every response sent so far, in request order."""
        with self._lock:
            return list(self._usages)

    def _usage_for(self, body: dict[str, Any], output: list[Item]) -> dict[str, Any]:
        with self._lock:
            number = len(self._usages) + 1
            if self.usage is None:
                usage = _word_usage(body, output)
            else:
                figures = self.usage(number)
                usage = {
                    "input_tokens": figures["input_tokens"],
                    "input_tokens_details": {
                        "cached_tokens": figures.get("cached_tokens", 0),
                        "cache_write_tokens": 0,
                    },
                    "output_tokens": figures["output_tokens"],
                    "output_tokens_details": {
                        "reasoning_tokens": figures.get("reasoning_tokens", 0)
                    },
                    "total_tokens": figures["input_tokens"] + figures["output_tokens"],
                }
            self._usages.append(usage)
            return usage

    def script(self, *replies: Item | Sequence[Item]) -> None:
        """Queues replies, one response each, served before falling back to the responder.

        Each argument is one response: a single output item, or a list of items (e.g.
        two ``tool_call``s for parallel calls). The queue is shared by all clients, FIFO
        in request arrival order; for concurrent sessions prefer ``tool_responder``.
        """
        with self._lock:
            for reply in replies:
                self._scripted.append([reply] if isinstance(reply, dict) else list(reply))

    # request handling (called on handler threads)

    def _record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(body)

    def _reply_items(self, body: dict[str, Any]) -> list[Item]:
        with self._lock:
            scripted = self._scripted.popleft() if self._scripted else None
        if scripted is not None:
            return [dict(item) for item in scripted]
        return self.responder(body)


def _word_usage(body: dict[str, Any], output: list[Item]) -> dict[str, Any]:
    """The default usage figures: words of the user messages in, of the reply out."""
    words = sum(len(text.split()) for text in user_texts(body))
    out_words = sum(
        len(part.get("text", "").split())
        for item in output
        for part in item.get("content", [])
        if isinstance(part, dict)
    )
    return {
        "input_tokens": words,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": out_words,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": words + out_words,
    }


def _response(
    body: dict[str, Any], output: list[Item], status: str, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A full Response object as the openai client parses it."""
    return {
        "id": _next_id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": body.get("model", "gpt-test"),
        "output": output,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "usage": usage if usage is not None else _word_usage(body, output),
    }


def _stream_events(
    body: dict[str, Any], output: list[Item], usage: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """The SSE events of one streamed response, without ``sequence_number``."""
    final = _response(body, output, "completed", usage)
    started = {**final, "status": "in_progress", "output": [], "usage": None}
    yield {"type": "response.created", "response": started}
    yield {"type": "response.in_progress", "response": started}
    for index, item in enumerate(output):
        ids = {"item_id": item.get("id", ""), "output_index": index}
        if item.get("type") == "message":
            yield {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "status": "in_progress", "content": []},
            }
            for part_index, part in enumerate(item.get("content", [])):
                at = {**ids, "content_index": part_index}
                text = part.get("text", "")
                yield {
                    "type": "response.content_part.added",
                    **at,
                    "part": {**part, "text": ""},
                }
                for delta in _chunks(text):
                    yield {
                        "type": "response.output_text.delta",
                        **at,
                        "delta": delta,
                        "logprobs": [],
                    }
                yield {"type": "response.output_text.done", **at, "text": text, "logprobs": []}
                yield {"type": "response.content_part.done", **at, "part": part}
        elif item.get("type") == "function_call":
            yield {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "status": "in_progress", "arguments": ""},
            }
            arguments = item.get("arguments", "")
            yield {"type": "response.function_call_arguments.delta", **ids, "delta": arguments}
            yield {
                "type": "response.function_call_arguments.done",
                **ids,
                "name": item.get("name"),
                "arguments": arguments,
            }
        else:
            yield {"type": "response.output_item.added", "output_index": index, "item": item}
        yield {"type": "response.output_item.done", "output_index": index, "item": item}
    yield {"type": "response.completed", "response": final}


def _chunks(text: str) -> list[str]:
    """Splits text into word-sized deltas (spaces kept) that join back to ``text``."""
    pieces = [word + " " for word in text.split(" ")]
    pieces[-1] = pieces[-1][:-1]
    return [piece for piece in pieces if piece] or [""]


def _error(
    message: str, kind: str = "invalid_request_error", code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _make_handler(server: ResponsesServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive; every reply is length-delimited
        disable_nagle_algorithm = True  # else each reply stalls ~40 ms on delayed ACKs

        def setup(self) -> None:
            super().setup()
            with server._lock:
                server._connections.add(self.connection)

        def finish(self) -> None:
            with server._lock:
                server._connections.discard(self.connection)
            super().finish()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep test output quiet

        def do_GET(self) -> None:
            self._send_json(404, _error(f"Unknown path {self.path}", code="not_found"))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.split("?")[0].rstrip("/") != "/v1/responses":
                self._send_json(404, _error(f"Unknown path {self.path}", code="not_found"))
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._send_json(400, _error("Request body is not valid JSON."))
                return
            server._record(body)
            problem = pairing_error(body) if server.check_pairing else None
            if problem is not None:  # rejected before a scripted reply is used up
                self._send_json(400, _error(problem))
                return
            try:
                output = server._reply_items(body)
            except Exception as exc:  # a responder bug: fail fast, don't hang the client
                self._send_json(500, _error(f"responder failed: {exc!r}", kind="server_error"))
                return
            usage = server._usage_for(body, output)
            if body.get("stream"):
                events = _stream_events(body, output, usage)
                if server.hold_after_first_delta is not None and server.hold_after_first_delta(
                    body
                ):
                    events = server._held(events)
                self._send_stream(events)
            else:
                self._send_json(200, _response(body, output, "completed", usage))

        def _send_json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if status >= 400:  # the openai client would retry a 5xx, slowly
                self.send_header("x-should-retry", "false")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_stream(self, events: Iterator[dict[str, Any]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for sequence_number, event in enumerate(events):
                event["sequence_number"] = sequence_number
                data = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")

    return Handler
