"""``personalizer serve``: uvicorn running the app factory in each worker, after the
settings were checked once here (a bad setting fails before any worker starts)."""

from __future__ import annotations

import ipaddress

from personalizer.errors import InvalidInput

from .._optional import require
from .keys import ApiKeys

__all__ = ["is_loopback", "run"]

# Seconds a stopping server waits for answers (streams included) still being written.
GRACEFUL_S = 30


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _log_config(uvicorn: object, level: str) -> dict:
    """uvicorn's logging, plus the gateway's access lines (logger ``personalizer``)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["personalizer"] = {"handlers": ["default"], "level": level.upper(),
                                         "propagate": False}
    return config


def run(*, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
        log_level: str = "info") -> None:
    """Check the settings, then serve until stopped (SIGINT/SIGTERM: in-flight answers
    finish first, up to 30 s). No keys configured (``PERSONALIZER_SERVER_KEYS``) is only
    allowed on a loopback address."""
    require("fastapi", extra="server", feature="personalizer serve")
    uvicorn = require("uvicorn", extra="server", feature="personalizer serve")
    from personalizer.settings import PersonalizerSettings

    settings = PersonalizerSettings.load()
    if settings.server_keys is None:
        if not is_loopback(host):
            raise InvalidInput(
                f"refusing to serve on {host} without API keys: anyone who reaches it could "
                "read and change every profile. Set PERSONALIZER_SERVER_KEYS (for example "
                "'<long-random-key>=chat,profiles:read') or bind to 127.0.0.1")
    else:
        ApiKeys.parse(settings.server_keys.get_secret_value())  # refused here, not per worker
    if settings.generator != "none":
        settings.served_model()
    if not 1 <= workers <= 64:
        raise InvalidInput("workers must be between 1 and 64")
    uvicorn.run("personalizer.server.app:from_settings", factory=True, host=host, port=port,
                workers=workers, log_level=log_level, log_config=_log_config(uvicorn, log_level),
                timeout_graceful_shutdown=GRACEFUL_S,
                proxy_headers=False, server_header=False,
                access_log=False)  # ours logs the route, never a user id in a path
