"""How the session page reads stored items: ``agentsession.ui.transcript``."""

from __future__ import annotations

from agentsession.ui.transcript import Segment, build_transcript, highlighted
from tests.ui_support import weather_conversation


def test_a_tool_call_carries_its_output_and_the_output_is_not_repeated() -> None:
    entries = build_transcript(weather_conversation(), 1)
    assert [(e.kind, e.position) for e in entries] == [
        ("message", 1),
        ("reasoning", 2),
        ("tool", 3),
        ("handoff", 5),
        ("message", 7),
    ]
    call = entries[2]
    assert call.title == "get_weather"
    assert call.arguments == '{\n  "city": "Paris",\n  "unit": "celsius"\n}'
    assert (call.output, call.output_position) == ("Sunny, 22 °C", 4)
    assert entries[3].title == "booking_agent"
    assert entries[1].text == "Check weather."
    assert (entries[4].role, entries[4].text) == (
        "assistant",
        "It is sunny in Paris (22 °C). Table booked.",
    )


def test_an_output_whose_call_is_on_an_earlier_page_stands_alone() -> None:
    page = weather_conversation()[3:5]  # call_1's output, then the handoff call
    entries = build_transcript(page, 4)
    assert [(e.kind, e.position, e.output) for e in entries] == [
        ("tool_output", 4, "Sunny, 22 °C"),
        ("handoff", 5, None),
    ]


def test_other_items_and_unparsable_arguments_are_shown_as_they_are() -> None:
    entries = build_transcript(
        [
            {"type": "function_call", "call_id": "x", "name": "f", "arguments": "not json"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed", "query": "q"},
        ],
        10,
    )
    assert (entries[0].arguments, entries[0].output) == ("not json", None)
    assert (entries[1].kind, entries[1].title, entries[1].position) == (
        "other",
        "web search call",
        11,
    )
    assert entries[1].text == '{\n  "query": "q"\n}'


def test_snippets_are_cut_at_the_highlight_marks() -> None:
    marks = ("\ue000", "\ue001")
    assert highlighted("It is \ue000sunny\ue001 in \ue000Paris\ue001.", marks) == [
        Segment("It is ", False),
        Segment("sunny", True),
        Segment(" in ", False),
        Segment("Paris", True),
        Segment(".", False),
    ]
    assert highlighted("no match", marks) == [Segment("no match", False)]


def test_a_compaction_summary_is_marked_as_one() -> None:
    from agentsession.compaction import summary_item

    messages = [summary_item("the user asked about Paris"), {"role": "user", "content": "and?"}]
    entries = build_transcript(messages, 1)
    assert [(e.kind, e.text) for e in entries] == [
        ("summary", "the user asked about Paris"),
        ("message", "and?"),
    ]
