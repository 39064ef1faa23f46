"""``agentsession ui``: a local, token-protected session inspector in the browser.

Needs the ``ui`` extra (``pip install 'agentsession[ui]'``: Starlette, Jinja2, uvicorn,
python-multipart). ``create_app`` builds the web application over any ``Store``;
``agentsession.cli.ui`` runs it. Modules: ``security`` (the per-start token, the Host
check, CSRF and the response headers), ``transcript`` (stored items as a conversation),
``ledger`` (token figures, where the store keeps them), ``app`` (the pages) and
``server`` (binding, the address line, Ctrl-C). See ``docs/ui.md``.
"""

from __future__ import annotations

from .app import Settings, create_app

__all__ = ("Settings", "create_app")
