"""Running the API under uvicorn with the connection limits (connections.py) and the backing-off
listener (listener.py), in one process or several."""

from __future__ import annotations

import logging
import sys
from typing import Any

from uvicorn import Config, Server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from api.server.capacity import ConnectionLimits, file_limit
from api.server.connections import GuardedH11Protocol

logger = logging.getLogger("uvicorn.error")


class GuardedConfig(Config):
    """uvicorn's config with the guarded protocol and loop, carrying the limits to the protocol (also in
    worker processes, which get the config pickled)."""

    def __init__(self, app: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedH11Protocol, loop="api.server.listener:new_event_loop", **kwargs)
        self.connection_limits = limits


def serve(app: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
    """Serve `app` (an app, or with `factory=True` an import string) as `uvicorn.run` would with
    `kwargs`, under `limits`. The listening socket is bound here and handed to the server (one process)
    or to each worker process (`workers` > 1), whose loop wraps it."""
    config = GuardedConfig(app, limits, **kwargs)
    logger.info(
        "each process: at most %d connections (of %d open files), request heads within %g s",
        limits.max_connections,
        file_limit(),
        limits.header_timeout,
    )
    sock = config.bind_socket()
    server = Server(config)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    if config.workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)
