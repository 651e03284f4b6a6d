"""`python -m ui`: serve the dashboard on $HOST:$PORT (default 127.0.0.1:ports["dashboard"]) with Settings.load()
and the addresses the environment names (ui/environment.py: REDIS_URL, PREDICT_URL, ... on a cluster)."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal

from coelho.settings import Settings
from ui.app import serve
from ui.environment import bind_address, from_environ


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("COELHO_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    # `kill -USR1 <pid>` writes every thread's stack to the log: how to see what a stuck dashboard is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    settings = from_environ(Settings.load())
    port = int(os.environ["PORT"]) if os.environ.get("PORT") else settings.ports["dashboard"]
    address = bind_address(settings)
    logging.getLogger("coelho.ui").info("dashboard on http://%s:%d", address, port)
    serve(settings, port=port, address=address)


if __name__ == "__main__":
    main()
