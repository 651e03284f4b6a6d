"""The cost of signing model state: encode and decode of each domain's default model after learning, against the
same pickle + lz4 without the HMAC and the allow-list (docs/adr/0090-signed-model-state.md).

Run: `.venv/bin/python bench/state_codec.py [--events 2000] [--repeat 20]`; the last line is JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("COELHO_STATE_KEY", "bench-model-state-key-0123456789abcdef")

import lz4.frame  # noqa: E402

import producers  # noqa: E402
from eventing.domains import DOMAINS  # noqa: E402
from functions.model_state import codec  # noqa: E402
from functions.model_state.online_model import OnlineModel  # noqa: E402


def best_ms(func, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return round(min(times) * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    out: dict[str, dict[str, float]] = {}
    for domain in DOMAINS.values():
        state = OnlineModel.fresh(domain)
        for i, raw in enumerate(producers.records(domain.name, args.events, seed=1), start=1):
            state.learn_one(i, "record", domain.validate(raw, purpose="record"), i * 1000)
        blob = codec.encode(state)
        raw_pickle = io.BytesIO()
        codec._SlimPickler(raw_pickle, protocol=5).dump(state)
        plain = bytes(lz4.frame.compress(raw_pickle.getvalue()))
        out[domain.name] = {
            "bytes": len(blob),
            "encode_signed_ms": best_ms(lambda s=state: codec.encode(s), args.repeat),
            "decode_signed_ms": best_ms(
                lambda b=blob, s=state: codec.decode(b, s.domain_name, s.model_name, s.seq), args.repeat
            ),
            "decode_unsigned_plain_ms": best_ms(
                lambda p=plain: pickle.loads(lz4.frame.decompress(p)),
                args.repeat,  # noqa: S301 (our own bytes)
            ),
            "hmac_ms": best_ms(lambda b=blob: codec._tag(b[:64], b[64:]), args.repeat),
        }
        print(f"{domain.name}: {out[domain.name]}", file=sys.stderr)
    print(json.dumps({"bench": "state_codec", "events": args.events, "domains": out}))


if __name__ == "__main__":
    main()
