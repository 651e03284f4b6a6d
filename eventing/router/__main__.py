"""`python -m eventing.router`: run the local router until SIGTERM or Ctrl-C.

Settings come from Settings.load() (environment, coelho.toml); manifests from knative/ unless --manifests.
--subscriber NAME=URL points a Service (or a uri) at another address, e.g. a test subscriber.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from coelho.settings import Settings
from eventing.router.router import DEFAULT_MANIFESTS, Router


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eventing.router", description=__doc__.splitlines()[0])
    parser.add_argument("--manifests", type=Path, default=DEFAULT_MANIFESTS, help="directory of Knative manifests")
    parser.add_argument("--subscriber", action="append", default=[], metavar="NAME=URL", help="override an address")
    parser.add_argument("--workers", type=int, default=16, help="delivery workers per Trigger")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    subscribers = dict(item.split("=", 1) for item in args.subscriber)
    router = Router(Settings.load(), manifests_dir=args.manifests, subscribers=subscribers, workers=args.workers)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    router.start()
    stop.wait()
    router.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
