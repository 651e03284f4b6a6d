"""Serving a function: `serve(app_factory)` runs it on HOST (default 127.0.0.1) and PORT with the server named
by COELHO_SERVER, or the function's default. Granian serves the hot paths (predict-one, learn-one), waitress the
others (docs/adr/0075-granian-function-server.md); gunicorn and werkzeug are there for comparison. Any other
name stops the function at start-up with the list of servers, rather than serving with a surprise.

    >>> server_name({"COELHO_SERVER": "waitress"}, "granian"), server_name({}, "granian")
    ('waitress', 'granian')
    >>> server_name({"COELHO_SERVER": "uvicorn"}, "granian")
    Traceback (most recent call last):
    ...
    ValueError: COELHO_SERVER='uvicorn': choose one of granian, waitress, gunicorn, werkzeug
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Flask

log = logging.getLogger("coelho.functions")

SERVERS = ("granian", "waitress", "gunicorn", "werkzeug")
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def server_name(environ: Mapping[str, str], default: str) -> str:
    """The server to run: COELHO_SERVER when set and not empty, else `default`; ValueError for an unknown one."""
    name = environ.get("COELHO_SERVER") or default
    if name not in SERVERS:
        raise ValueError(f"COELHO_SERVER={name!r}: choose one of {', '.join(SERVERS)}")
    return name


def serve(
    app_factory: Callable[[], Flask],
    default_port: int = 8080,
    default_server: str = "waitress",
    threads: int | None = None,
) -> None:
    """Serve the app on HOST:PORT until stopped, with `server_name(os.environ, default_server)` and `threads`
    request threads (default COELHO_THREADS, 16).

    The app is built by `app_factory` inside the serving process (after any fork), so background threads
    (e.g. predict's log follower) start where they are used.
    """
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", str(default_port)))
    threads = threads or int(os.environ.get("COELHO_THREADS", "16"))
    try:
        server = server_name(os.environ, default_server)
    except ValueError as exc:
        raise SystemExit(f"cannot start: {exc}") from None
    log.info("serving on %s:%s with %s (%d threads)", host, port, server, threads)
    if server == "werkzeug":
        app_factory().run(host=host, port=port, threaded=True)
    elif server == "granian":
        _serve_granian(app_factory, host, port, threads)
    elif server == "waitress":
        import waitress

        # as many open connections as threads (waitress's default is 100): a lake request holds its connection while
        # it waits for its batch's commit
        from functions.middleware.limits import max_body_bytes

        # a chunked body is buffered by waitress before the app sees it: bounded here too (413 past the limit)
        waitress.serve(
            app_factory(),
            host=host,
            port=port,
            threads=threads,
            ident=None,
            connection_limit=max(100, threads),
            asyncore_use_poll=True,  # select() cannot watch a descriptor above 1024 (the lake's thousands of waits)
            max_request_body_size=max_body_bytes(),
        )
    else:  # gunicorn
        _serve_gunicorn(app_factory, host, port, threads)


GRANIAN_APP_ENV = "COELHO_GRANIAN_APP"  # "module:factory" of the app the Granian worker builds


def _serve_granian(app_factory: Callable[[], Flask], host: str, port: int, threads: int) -> None:
    """Granian (a Rust HTTP server) parses HTTP and runs the WSGI app in one worker process (ADR 0075).

    The worker builds the app through `granian_app`, which reads the factory's import path from the environment.
    """
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    module = app_factory.__module__
    if module == "__main__":  # `python -m functions.predict`: name the module by its real name
        module = _main_module_name() or module
    os.environ[GRANIAN_APP_ENV] = f"{module}:{app_factory.__name__}"
    Granian(
        "functions.middleware.servers:granian_app",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        factory=True,
        workers=1,
        blocking_threads=threads,
        log_access=False,
        log_level=LogLevels.warning,
    ).serve()


def _main_module_name() -> str | None:
    """The import name of the module run as `__main__` (`python -m functions.predict` -> "functions.predict")."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None else None


def granian_app() -> WSGIApp:
    """The app inside Granian's worker. The worker dies with its parent (PR_SET_PDEATHSIG), so killing the
    function's process with SIGKILL, as a crash would, never leaves an orphan holding the port."""
    import ctypes
    import importlib
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    module, _, name = os.environ[GRANIAN_APP_ENV].partition(":")
    # The worker is forked: the function's module is loaded already, as `__main__` (importing it again under its
    # real name would register its Prometheus metrics twice).
    loaded = sys.modules["__main__"] if _main_module_name() == module else importlib.import_module(module)
    app: WSGIApp = getattr(loaded, name)()
    return app


def _serve_gunicorn(app_factory: Callable[[], Flask], host: str, port: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class FunctionServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", 1)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("timeout", 120)
            self.cfg.set("graceful_timeout", 5)
            self.cfg.set("keepalive", 30)
            self.cfg.set("accesslog", None)

        def load(self) -> Flask:
            return app_factory()

    FunctionServer().run()
