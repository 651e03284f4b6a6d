"""`python -m ui`: serve the dashboard on 127.0.0.1:ports["dashboard"] (or $PORT) with Settings.load()."""

from __future__ import annotations

import logging
import os

from coelho.settings import Settings
from ui.app import serve


def main() -> None:
    logging.basicConfig(level=os.environ.get("COELHO_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings.load()
    port = int(os.environ["PORT"]) if os.environ.get("PORT") else settings.ports["dashboard"]
    logging.getLogger("coelho.ui").info("dashboard on http://%s:%d", settings.host, port)
    serve(settings, port=port)


if __name__ == "__main__":
    main()
