"""Decode cost per event: bytes straight to the pydantic model, against plain orjson parsing.

    python -m bench.decode [--events N]

Prints events/s and microseconds per event for: orjson.loads (a parse without validation, the
floor), Floorwatch's Decoder.decode (bytes -> validated model, customer_ref hashed), and the
re-serialisation ingest does before forwarding (model -> JSON bytes).
"""

from __future__ import annotations

import argparse
import time
from itertools import islice

import orjson

from streams.ingest import Decoder
from streams.simulator import SimConfig, generate


def measure(name: str, fn, values: list[bytes]) -> tuple[str, float]:
    start = time.perf_counter()
    for value in values:
        fn(value)
    elapsed = time.perf_counter() - start
    return name, elapsed / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    print(f"generating {args.events} simulated events...", flush=True)
    values = [m.value for m in islice(generate(SimConfig(seed=1, duration_s=30 * 86400, rate=60)), args.events)]
    decoder = Decoder(b"bench-key")
    models = [decoder.decode(v) for v in values]

    def dump(model):
        return model.__pydantic_serializer__.to_json(model)

    rows = [
        measure("orjson.loads (parse only)", orjson.loads, values),
        measure("Decoder.decode (bytes -> model)", decoder.decode, values),
    ]
    start = time.perf_counter()
    for model in models:
        dump(model)
    rows.append(("model -> JSON bytes (forwarding)", (time.perf_counter() - start) / len(models)))
    print(f"{'step':36s} {'events/s':>12s} {'us/event':>9s}")
    for name, per_event in rows:
        print(f"{name:36s} {1 / per_event:12,.0f} {per_event * 1e6:9.2f}")


if __name__ == "__main__":
    main()
