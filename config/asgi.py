"""ASGI entry point: HTTP to Django, WebSockets through origin checks and authentication
to the consumers."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # what get_asgi_application() does, with our handler:

from config.admission import AdmissionLimit  # noqa: E402
from config.handlers import SyncChainASGIHandler  # noqa: E402
from config.warmup import warm_process  # noqa: E402

django_asgi_app = SyncChainASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import SessionMiddlewareStack  # noqa: E402

from agents.auth import WebSocketAuthMiddleware  # noqa: E402
from agents.consumers import CLOSE_GOING_AWAY  # noqa: E402
from agents.routing import websocket_urlpatterns  # noqa: E402
from agents.runtime.executors import remember_server_loop  # noqa: E402
from agents.shutdown import install as install_shutdown  # noqa: E402
from agents.transport import StreamTransportMiddleware  # noqa: E402

# Before daphne listens: the first run must not import the runtime on the event loop.
warm_process()

# Outermost, so it still sees daphne's own ``send`` (see agents/transport.py).
router = StreamTransportMiddleware(
    ProtocolTypeRouter(
        {
            "http": AdmissionLimit(django_asgi_app),
            "websocket": SessionMiddlewareStack(
                WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    # The in-process executor starts runs on the server's own loop (see executors.py).
    loop = asyncio.get_running_loop()
    remember_server_loop(loop, reaper=True)
    # Stream clients get "going away" (4503) when the server stops (agents/shutdown.py).
    install_shutdown(loop, CLOSE_GOING_AWAY)
    await router(scope, receive, send)
