"""The gateway: an OpenAI-compatible personalization server (``personalizer serve``).

An app that talks to a model through the OpenAI SDK points its ``base_url`` at the gateway
and names the person in the request's ``user`` field; the answer is personalized by their
profile. ``create_app(personalizer)`` gives the ASGI app to mount into your own; the
profile endpoints (``/v1/profiles/...``) serve the app's backend. Needs the ``server``
extra (``pip install 'personalizer[server]'``). See docs/how-to/serving.md.
"""

from __future__ import annotations

from typing import Any

from .._optional import require
from .keys import SCOPES, ApiKeys

__all__ = ["ApiKeys", "SCOPES", "create_app", "serve"]


def create_app(personalizer: Any, **options: Any) -> Any:
    """The gateway's ASGI app for ``personalizer`` (see :func:`.app.create_app`)."""
    require("fastapi", extra="server", feature="the gateway (personalizer.server)")
    from .app import create_app as build

    return build(personalizer, **options)


def serve(*, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "info") -> None:
    """Run the gateway from the settings (:func:`.app.from_settings` in each of ``workers``
    processes) until stopped; see :func:`.serve.run`."""
    from .serve import run

    run(host=host, port=port, workers=workers, log_level=log_level)
