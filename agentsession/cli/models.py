"""Which model the demo and the chat talk to.

* ``OPENAI_API_KEY`` set: the OpenAI model named by ``--model``, else ``AGENTSESSION_MODEL``,
  else the Agents SDK's default (``OPENAI_DEFAULT_MODEL`` or the SDK's built-in default).
* ``--base-url`` (or ``OPENAI_BASE_URL``): any OpenAI-compatible server (Ollama, vLLM,
  LM Studio); a key is then optional.
* Neither, or ``--model offline``: the offline model shipped in the package
  (``agentsession.cli.offline.OfflineModel``), which says so.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    # The Agents SDK takes over a second to import: only the commands that run a model
    # (``demo``, ``chat``) load it, in ``ModelChoice.build`` and ``choose_model``.
    from agents.model_settings import ModelSettings
    from agents.models.interface import Model

__all__ = (
    "model_options",
    "API_CHOICES",
    "BuiltModel",
    "MODEL_ENV",
    "ModelChoice",
    "OFFLINE_MODEL_NAME",
    "PLACEHOLDER_KEY",
    "choose_model",
)

#: The name of the offline demo model (``--model offline`` selects it).
OFFLINE_MODEL_NAME = "offline"

#: Environment variable naming the model, overridden by ``--model``.
MODEL_ENV = "AGENTSESSION_MODEL"

#: The OpenAI APIs ``--api`` can choose between.
API_CHOICES = ("responses", "chat_completions")

#: Sent as the API key to a ``--base-url`` server when ``OPENAI_API_KEY`` is not set
#: (local servers ignore it; the OpenAI client refuses to start without one).
PLACEHOLDER_KEY = "not-needed"


async def _nothing() -> None:
    return None


@dataclass
class BuiltModel:
    """A model ready for an ``Agent``, with what the run needs to know about it.

    Attributes:
        model: the model object to give ``Agent(model=...)``.
        settings: model settings suited to it.
        tracing_disabled: true unless the model is OpenAI's own (traces would otherwise
            be sent to OpenAI for runs that never touch it).
        aclose: closes the HTTP client, if any; await it once the runs are over.
    """

    model: Model
    settings: ModelSettings
    tracing_disabled: bool
    aclose: Callable[[], Awaitable[None]] = field(default=_nothing)


@dataclass(frozen=True)
class ModelChoice:
    """The model chosen from the command line and the environment.

    Attributes:
        name: the model name, or ``"offline"``.
        api: ``"responses"`` or ``"chat_completions"``.
        base_url: an OpenAI-compatible server, or ``None`` for OpenAI.
        api_key: the key to send, or ``None`` for the offline model.
        why_offline: for the offline model, why it was chosen.
    """

    name: str
    api: str = "responses"
    base_url: str | None = None
    api_key: str | None = None
    why_offline: str = ""

    @property
    def offline(self) -> bool:
        """Whether this is the offline model."""
        return self.name == OFFLINE_MODEL_NAME

    def describe(self) -> str:
        """One line for people saying which model answers, and for the offline one, why."""
        if self.offline:
            return (
                f"Model: the offline demo model ({self.why_offline}); it can't answer "
                "questions, only report what this session's memory holds. "
                "Set OPENAI_API_KEY to talk to a real model."
            )
        where = self.base_url or "OpenAI"
        return f"Model: {self.name} at {where} ({self.api.replace('_', ' ')} API)"

    def build(self, *, stream_delay: float = 0.0) -> BuiltModel:
        """Create the model (and its HTTP client); call it on the event loop that runs it.

        Args:
            stream_delay: seconds between streamed words, for the offline model only.
        """
        from agents.model_settings import ModelSettings

        if self.offline:
            from .offline import OfflineModel

            return BuiltModel(OfflineModel(delay=stream_delay), ModelSettings(), True)
        from agents import OpenAIChatCompletionsModel, OpenAIResponsesModel
        from agents.models import get_default_model_settings
        from openai import AsyncOpenAI

        client = AsyncOpenAI(api_key=self.api_key, base_url=self.base_url)
        model: Model
        if self.api == "chat_completions":
            model = OpenAIChatCompletionsModel(model=self.name, openai_client=client)
        else:
            model = OpenAIResponsesModel(model=self.name, openai_client=client)
        settings = get_default_model_settings(self.name)
        return BuiltModel(model, settings, self.base_url is not None, client.close)


def choose_model(
    model: str | None,
    base_url: str | None,
    api: str,
    env: Mapping[str, str] | None = None,
) -> ModelChoice:
    """Choose the model as the module docstring says.

    Args:
        model: ``--model`` (or ``AGENTSESSION_MODEL``), or ``None``.
        base_url: ``--base-url`` (or ``OPENAI_BASE_URL``), or ``None``.
        api: ``--api``.
        env: the environment (``os.environ`` by default).

    Raises:
        click.BadParameter: ``api`` is unknown, or a model other than ``offline`` was named
            but there is neither an API key nor a base URL to reach it.
    """
    env = os.environ if env is None else env
    if api not in API_CHOICES:
        raise click.BadParameter(
            f"{api!r} is not one of {', '.join(API_CHOICES)}", param_hint="--api"
        )
    name = (model or "").strip()
    if name.lower() == OFFLINE_MODEL_NAME:
        return ModelChoice(OFFLINE_MODEL_NAME, api, why_offline="chosen with --model offline")
    key = env.get("OPENAI_API_KEY", "").strip() or None
    base_url = (base_url or "").strip() or None
    if key is None and base_url is None:
        if name:
            raise click.BadParameter(
                f"model {name!r} needs OPENAI_API_KEY set (or --base-url for a local "
                "server); leave --model out to use the offline demo model",
                param_hint=f"--model / {MODEL_ENV}",
            )
        return ModelChoice(OFFLINE_MODEL_NAME, api, why_offline="OPENAI_API_KEY is not set")
    if not name:
        from agents.models import get_default_model

        name = get_default_model()
    return ModelChoice(name, api, base_url, key or PLACEHOLDER_KEY)


def model_options(command: Any) -> Any:
    """``--model``, ``--base-url`` and ``--api``, shared by ``demo``, ``chat`` and ``compact``."""
    command = click.option(
        "--api",
        type=click.Choice(API_CHOICES),
        default="responses",
        show_default=True,
        help="Which OpenAI API to call (chat_completions for most local servers).",
    )(command)
    command = click.option(
        "--base-url",
        metavar="URL",
        envvar="OPENAI_BASE_URL",
        show_envvar=True,
        help="An OpenAI-compatible server, e.g. http://localhost:11434/v1 for Ollama.",
    )(command)
    command = click.option(
        "--model",
        metavar="NAME",
        envvar=MODEL_ENV,
        show_envvar=True,
        help="Model name (default: the Agents SDK's default); 'offline' picks the "
        "offline demo model, used anyway when OPENAI_API_KEY is not set.",
    )(command)
    return command
