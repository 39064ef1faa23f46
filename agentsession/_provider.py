"""The default model provider, with one OpenAI client per event loop.

The SDK's default provider shares one ``AsyncOpenAI`` client (and its HTTP connection
pool) across the whole process. An HTTP connection pool belongs to the event loop that
first used it, so once a second loop runs a model call (``asyncio.run`` after
``run_sync``, a FastAPI app beside a worker thread) the shared client fails with "bound
to a different event loop". This provider keeps the SDK's ``MultiProvider`` behaviour
(model name prefixes, the SDK's global defaults) but gives each loop its own client.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

from agents.models.interface import Model, ModelProvider
from agents.models.multi_provider import MultiProvider
from openai import AsyncOpenAI, DefaultAsyncHttpx2Client, OpenAIError

from ._sdk import get_default_openai_client, get_default_openai_key

__all__ = ("LoopLocalProvider",)


class LoopLocalProvider(ModelProvider):
    """A ``MultiProvider`` per event loop, each with an OpenAI client of its own.

    If the application installed a client with ``agents.set_default_openai_client``,
    that client is used as the SDK would use it.

    Thread safety: safe to share between threads and event loops.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._providers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MultiProvider]
        self._providers = weakref.WeakKeyDictionary()
        self._outside_loop: MultiProvider | None = None

    @staticmethod
    def _new_provider() -> MultiProvider:
        if get_default_openai_client() is not None:
            return MultiProvider()
        try:
            client = AsyncOpenAI(
                api_key=get_default_openai_key(),
                http_client=DefaultAsyncHttpx2Client(),
            )
        except OpenAIError:
            # No API key: the SDK's own provider raises its usual error if an OpenAI
            # model is asked for, and other prefixes (litellm/...) still work.
            return MultiProvider()
        return MultiProvider(openai_client=client)

    def _provider(self) -> MultiProvider:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            with self._lock:
                if self._outside_loop is None:
                    self._outside_loop = self._new_provider()
                return self._outside_loop
        with self._lock:
            provider = self._providers.get(loop)
            if provider is None:
                provider = self._providers[loop] = self._new_provider()
            return provider

    def get_model(self, model_name: str | None) -> Model:
        """Resolve ``model_name`` as the SDK's default provider does, on this loop's client."""
        return self._provider().get_model(model_name)

    async def aclose(self) -> None:
        """Close the providers of the running loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        with self._lock:
            provider = self._providers.pop(loop, None)
        if provider is not None:
            await provider.aclose()
