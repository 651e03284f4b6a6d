"""`python -m functions.lake`: the lake function (functions/lake/service.py), served by waitress.

Each request waits for the commit of its batch, so the server needs a thread per request in flight: as many as
the deliveries the lake's Triggers keep in flight together (five Triggers of 500, knative/eventing/triggers.yaml),
plus a few for probes, metrics and maintenance: COELHO_LAKE_THREADS (default 2,560). An idle thread costs ~20 KB.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask

from functions.lake import service
from functions.middleware.app import serve

DEFAULT_THREADS = 2560


def threads(environ: Mapping[str, str] | None = None) -> int:
    """COELHO_LAKE_THREADS, else DEFAULT_THREADS.

    >>> threads({}), threads({"COELHO_LAKE_THREADS": "64"})
    (2560, 64)
    """
    env = os.environ if environ is None else environ
    return int(env.get("COELHO_LAKE_THREADS") or DEFAULT_THREADS)


def create() -> Flask:
    app = service.create()
    service.stop_on_sigterm(app.config["lake"])
    return app


if __name__ == "__main__":
    serve(create, threads=threads())
