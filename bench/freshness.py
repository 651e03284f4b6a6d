"""Freshness: delay between an event learned by learn-one and a prediction of predict-one that reflects it.

Private Redis (the platform's service, free ports), one learn-one and one predict-one process. Repeatedly: POST a
record to learn-one; when its `learned` reply arrives (the event is committed and applied by the learner), poll
predict-one (plain JSON POST, back to back) until a prediction reports a log position (`seq`) at or past that
event. The delay is reply -> first reflecting prediction. Background learning runs meanwhile at --rate events/s.
Target: <= 1 s.

    .venv/bin/python bench/freshness.py [--samples 100] [--rate 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

from function_harness import Client, ce_request, function_process, load_average, percentile, private_platform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0, help="background records/s into learn-one")
    parser.add_argument("--domain", default="tfd")
    args = parser.parse_args()

    from eventing.domains import get_domain
    from functions.middleware.auth import auth_headers
    from tests.functions.streams import events

    domain = get_domain(args.domain)
    stream = events(domain.name, args.samples + int(args.rate * 120) + 10, seed=17)
    probes = stream[:1]
    delays: list[float] = []
    with (
        private_platform(["redis"]) as platform,
        function_process(platform.settings, "learn", extra_env={"COELHO_RESTORE": "0"}) as learn_url,
        function_process(platform.settings, "predict") as predict_url,
    ):
        stop = threading.Event()
        background = stream[args.samples :]

        def feed() -> None:
            client = Client(learn_url)
            started = time.perf_counter()
            for i, record in enumerate(background):
                if stop.is_set():
                    return
                delay = started + i / args.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                client.post("/", *ce_request(domain.type("record"), record))

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        learn = Client(learn_url)
        predict = Client(predict_url)
        headers = {"content-type": "application/json", **auth_headers()}  # predict-one's token, when set
        probe_body = json.dumps(probes[0]).encode()
        for record in stream[: args.samples]:
            status, body = learn.post("/", *ce_request(domain.type("record"), record))
            assert status == 200, body
            learned_at = time.perf_counter()
            seq = json.loads(body)["seq"]
            while True:
                status, body = predict.post(f"/predict/{domain.name}", headers, probe_body)
                if status == 200 and json.loads(body)["seq"] >= seq:
                    break
                if time.perf_counter() - learned_at > 10:
                    break
            delays.append((time.perf_counter() - learned_at) * 1000)
            time.sleep(0.02)
        stop.set()
    delays.sort()
    print(
        json.dumps(
            {
                "bench": "freshness",
                "domain": domain.name,
                "samples": len(delays),
                "background_rate_per_s": args.rate,
                "p50_ms": round(percentile(delays, 50), 1),
                "p99_ms": round(percentile(delays, 99), 1),
                "max_ms": round(delays[-1], 1),
                "mean_ms": round(statistics.fmean(delays), 1),
                "load_average": load_average(),
                "target_ms": 1000,
            }
        )
    )


if __name__ == "__main__":
    main()
