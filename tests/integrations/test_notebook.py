"""The quick-start notebook, executed top to bottom in a real Jupyter kernel.

The kernel is a separate process running this interpreter; it inherits this process's
environment, where the conftest's loopback server is ``OPENAI_BASE_URL``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integrations._http import message_text
from tests.integrations.conftest import EXAMPLES
from tests.responses_server import ResponsesServer, user_texts

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = EXAMPLES / "notebook" / "quickstart.ipynb"
KERNEL = "agentsession-test"

QUESTIONS = [
    "What city is the Golden Gate Bridge in?",
    "What state is it in?",
    "What's the population?",
]


def echo(turn: int) -> str:
    return f"echo: {QUESTIONS[turn - 1]} (seen {turn} user messages)"


def stdout_of(cell: Any) -> str:
    assert not [o for o in cell.outputs if o.output_type == "error"], cell.outputs
    return "".join(o.text for o in cell.outputs if o.get("name") == "stdout")


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec for this very interpreter, found first on ``JUPYTER_PATH``."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "agentsession test", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")  # traces would go to the API
    return KERNEL


@pytest.mark.timeout(120)
def test_quickstart_notebook_runs_in_a_kernel(
    model_server: ResponsesServer, kernel: str, tmp_path: Path
) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells), "outputs are committed"
    workdir = tmp_path / "run"
    workdir.mkdir()

    client = nbclient.NotebookClient(
        notebook,
        kernel_name=kernel,
        timeout=60,
        resources={"metadata": {"path": str(workdir)}},  # the kernel's working directory
    )
    client.execute()
    cells = {cell.id: cell for cell in notebook.cells}

    # Top-level await (turns 1 and 2), then run_sync inside the kernel's running loop.
    assert stdout_of(cells["turn-1"]) == echo(1) + "\n"
    assert stdout_of(cells["turn-2"]) == echo(2) + "\n"
    assert stdout_of(cells["turn-3"]) == echo(3) + "\n"
    assert stdout_of(cells["transcript"]).splitlines() == [
        line
        for turn in (1, 2, 3)
        for line in (f"user: {QUESTIONS[turn - 1]}", f"assistant: {echo(turn)}")
    ]

    # The model saw the whole conversation each time, and the history is on disk.
    sent = [user_texts(body) for body in model_server.new_requests()]
    assert sent == [QUESTIONS[:1], QUESTIONS[:2], QUESTIONS]
    from agentsession import SQLiteSessionMemory

    with SQLiteSessionMemory(workdir / "conversations.db") as memory:
        stored = memory.store.get_messages("conversation_123")
    assert [message_text(m) for m in stored][-1] == echo(3)
    assert len(stored) == 6
