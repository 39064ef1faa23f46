"""The fake Responses server works with the real openai client and Agents SDK.

These tests use only ``agents`` and ``openai`` (not ``agentsession``), so they prove the
test support itself, independently of the package under test.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import agents
import openai
import pytest
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool
from openai.types.responses import ResponseTextDeltaEvent
from responses_server import ResponsesServer, input_items, text_reply, tool_call, tool_responder


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the Agents SDK runs on asyncio only


@pytest.fixture(autouse=True)
def _tracing_off() -> None:
    agents.set_tracing_disabled(True)


@pytest.fixture
def server() -> Iterator[ResponsesServer]:
    with ResponsesServer(check_pairing=True) as server:
        yield server


@function_tool
def get_weather(city: str) -> str:
    """Returns the weather in a city.

    Args:
        city: The city's name.
    """
    return f"sunny in {city}"


def make_agent(client: openai.AsyncOpenAI) -> Agent:
    model = OpenAIResponsesModel(model="gpt-test", openai_client=client)
    return Agent(name="assistant", instructions="Be brief.", model=model, tools=[get_weather])


def client_for(server: ResponsesServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


@pytest.mark.anyio
async def test_plain_run_echoes_and_records_input(server: ResponsesServer) -> None:
    async with client_for(server) as client:
        agent = make_agent(client)
        first = await Runner.run(agent, "hello", run_config=RunConfig(tracing_disabled=True))
        assert first.final_output == "echo: hello (seen 1 user messages)"

        history = [*first.to_input_list(), {"role": "user", "content": "again"}]
        second = await Runner.run(agent, history)
        assert second.final_output == "echo: again (seen 2 user messages)"

    bodies = server.requests
    assert len(bodies) == 2
    assert bodies[0]["model"] == "gpt-test"
    assert bodies[0]["instructions"] == "Be brief."
    assert [tool["name"] for tool in bodies[0]["tools"]] == ["get_weather"]
    assert [item.get("role") for item in bodies[1]["input"]] == ["user", "assistant", "user"]
    assert first.context_wrapper.usage.total_tokens > 0


@pytest.mark.anyio
async def test_streamed_run_yields_deltas_and_final_output(server: ResponsesServer) -> None:
    async with client_for(server) as client:
        result = Runner.run_streamed(make_agent(client), "stream me please")
        deltas = [
            event.data.delta
            async for event in result.stream_events()
            if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent)
        ]
    expected = "echo: stream me please (seen 1 user messages)"
    assert len(deltas) > 1
    assert "".join(deltas) == expected
    assert result.final_output == expected
    assert server.requests[0]["stream"] is True


@pytest.mark.anyio
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
async def test_function_tool_round_trip(server: ResponsesServer, streamed: bool) -> None:
    server.script(tool_call("get_weather", {"city": "Paris"}, call_id="call_paris"))
    async with client_for(server) as client:
        agent = make_agent(client)
        if streamed:
            result = Runner.run_streamed(agent, "weather in Paris?")
            async for _ in result.stream_events():
                pass
        else:
            result = await Runner.run(agent, "weather in Paris?")

    assert result.final_output == "tool said: sunny in Paris"
    first, second = server.requests
    assert input_items(first)[-1]["content"] == "weather in Paris?"
    call, output = second["input"][-2:]
    assert call["type"] == "function_call"
    assert (call["call_id"], call["name"]) == ("call_paris", "get_weather")
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert output == {
        "type": "function_call_output",
        "call_id": "call_paris",
        "output": "sunny in Paris",
    }


@pytest.mark.anyio
async def test_tool_responder_and_multi_item_script(server: ResponsesServer) -> None:
    server.responder = tool_responder("weather", "get_weather", {"city": "Rome"})
    server.script([text_reply("one"), text_reply("two")])
    async with client_for(server) as client:
        agent = make_agent(client)
        scripted = await Runner.run(agent, "anything")
        assert scripted.final_output == "two"  # the last message is the final output
        weather = await Runner.run(agent, "weather please")
        assert weather.final_output == "tool said: sunny in Rome"
        plain = await Runner.run(agent, "hi")
        assert plain.final_output == "echo: hi (seen 1 user messages)"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "items",
    [
        [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}],
        [
            {"role": "user", "content": "hi"},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        ],
    ],
    ids=["orphan-output", "orphan-call"],
)
async def test_check_pairing_rejects_unpaired_items(
    server: ResponsesServer, items: list[dict[str, str]]
) -> None:
    async with client_for(server) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="gpt-test", input=items)
        assert caught.value.status_code == 400
        assert caught.value.body["type"] == "invalid_request_error"
        assert "call_" in caught.value.message

        paired = [
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        ]
        response = await client.responses.create(model="gpt-test", input=paired)
        assert response.output_text == "tool said: 42"


def test_unknown_path_is_404(server: ResponsesServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{server.base_url}/chat/completions", data=b"{}")
    assert caught.value.code == 404
    assert "error" in json.loads(caught.value.read())
    caught.value.close()


def test_concurrent_clients_on_many_threads(server: ResponsesServer) -> None:
    answers: dict[int, str] = {}

    async def ask(n: int) -> None:
        async with client_for(server) as client:
            for _ in range(3):  # several requests reuse one keep-alive connection
                result = await Runner.run(make_agent(client), f"message {n}")
        answers[n] = result.final_output

    threads = [threading.Thread(target=asyncio.run, args=(ask(n),)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == {n: f"echo: message {n} (seen 1 user messages)" for n in range(8)}
    assert len(server.requests) == 24
