"""`python -m functions.lake`: the lake function (functions/lake/service.py), served by waitress.

Each request waits for the commit of its batch, so the server needs a thread per request in flight:
COELHO_LAKE_THREADS (default 128) of them.
"""

from __future__ import annotations

import os

from flask import Flask

from functions.lake import service
from functions.middleware.app import serve


def create() -> Flask:
    app = service.create()
    service.stop_on_sigterm(app.config["lake"])
    return app


if __name__ == "__main__":
    serve(create, threads=int(os.environ.get("COELHO_LAKE_THREADS") or "128"))
