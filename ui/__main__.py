"""`python -m ui`: serve the dashboard on 127.0.0.1:ports["dashboard"] (or $PORT) with Settings.load()."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal

from coelho.settings import Settings
from ui.app import serve


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("COELHO_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    # `kill -USR1 <pid>` writes every thread's stack to the log: how to see what a stuck dashboard is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    settings = Settings.load()
    port = int(os.environ["PORT"]) if os.environ.get("PORT") else settings.ports["dashboard"]
    logging.getLogger("coelho.ui").info("dashboard on http://%s:%d", settings.host, port)
    serve(settings, port=port)


if __name__ == "__main__":
    main()
