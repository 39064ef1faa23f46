"""The README's quick start as a script: ``python examples/quickstart.py``.

Three questions on one session, the second and third answered with the first in memory;
the conversation is kept in ``conversations.db`` in the working directory, so running it
again continues it. With ``OPENAI_API_KEY`` set it talks to OpenAI. Without one it uses the
offline demo model that ships with agentsession, which cannot answer questions but shows
what the session's memory gave it (how many earlier messages, the first question asked).
"""

from __future__ import annotations

import asyncio
import os

from agentsession import Agent, RunConfig, Runner, SQLiteSessionMemory

OFFLINE = not os.environ.get("OPENAI_API_KEY")


def make_agent() -> Agent:
    """The README's agent; on the offline demo model when there is no key."""
    if not OFFLINE:
        return Agent(name="Assistant", instructions="Reply very concisely.")
    from agentsession.cli.offline import OfflineModel

    print("OPENAI_API_KEY is not set: the offline demo model answers, from memory only.\n")
    return Agent(name="Assistant", instructions="Reply very concisely.", model=OfflineModel())


async def main(agent: Agent, run_config: RunConfig) -> None:
    for question in ("What city is the Golden Gate Bridge in?", "What state is it in?"):
        result = await Runner.run(agent, question, run_config=run_config)
        print(f"User: {question}\nAssistant: {result.final_output}\n")


if __name__ == "__main__":
    agent = make_agent()
    memory = SQLiteSessionMemory("conversations.db")
    # Offline, no trace goes to OpenAI (there is no key to send it with).
    run_config = RunConfig(memory=memory, session_id="conversation_123", tracing_disabled=OFFLINE)
    try:
        asyncio.run(main(agent, run_config))
        question = "What's the population?"
        result = Runner.run_sync(agent, question, run_config=run_config)  # sync works too
        print(f"User: {question}\nAssistant: {result.final_output}")
    finally:
        memory.close()
