"""The worker's web port: who may read it.

faust serves ``/health``, ``/metrics``, ``/alerts`` and its own pages (``/router/``,
``/table/<name>/``, ...) on one aiohttp application. It listens on ``worker.web_bind``
(127.0.0.1 unless set). With a token in the environment variable named by
``worker.web_token_env``, every page but ``/health`` (what probes read) asks for
``Authorization: Bearer <token>``; a wrong or missing one gets 401.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

OPEN_PATHS = frozenset({"/health"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer_guard(token: str, open_paths: frozenset[str] = OPEN_PATHS) -> Any:
    """An aiohttp middleware that lets a request through only with the bearer ``token``."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response(
                {"error": "unauthorized: this page needs Authorization: Bearer <token>"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="spendwatch"'},
            )
        return await handler(request)

    return guard


def application_options(token_env: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """faust's ``web_application_options``: the guard when the token variable is set."""
    token = environ.get(token_env, "") if token_env else ""
    return {"middlewares": [bearer_guard(token)]} if token else {}
