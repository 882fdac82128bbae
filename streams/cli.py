"""The `floorwatch` command: broker, worker, simulate, replay, demo, schema."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from streams.config import ConfigError, Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


# -- broker ------------------------------------------------------------------------------------

def cmd_broker(args: argparse.Namespace) -> int:
    from streams.broker import LocalBroker

    broker = LocalBroker(port=args.port, controller_port=args.port + 1)
    if args.action == "start":
        bootstrap = broker.start()
        settings = _settings(args)
        settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(
            update={"bootstrap_servers": bootstrap})})
        from streams.kafka_io import ensure_topics

        created = asyncio.run(ensure_topics(settings))
        print(f"broker: running at {bootstrap}" + (f"; created topics {', '.join(created)}" if created else ""))
        print(f"logs: {broker.status().log_file}   stop with: floorwatch broker stop")
    elif args.action == "stop":
        print("broker: stopped" if broker.stop() else "broker: was not running")
    else:
        status = broker.status()
        state = f"running (pid {status.pid}) at {status.bootstrap}" if status.running else "not running"
        print(f"broker: {state}\ndata: {status.data_dir}\nlogs: {status.log_file}")
        return 0 if status.running else 3
    return 0


# -- worker ------------------------------------------------------------------------------------

def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.web_port:
        settings = settings.model_copy(update={"worker": settings.worker.model_copy(
            update={"web_port": args.web_port})})
    settings.require_hash_key()
    from streams.kafka_io import ensure_topics

    try:
        asyncio.run(asyncio.wait_for(ensure_topics(settings), timeout=60))
    except Exception as exc:  # unreachable broker, auth failure: say so before Faust's retries
        print(f"worker: cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc!r}\n"
              "start a local one with: floorwatch broker start", file=sys.stderr)
        return 2
    from faust import Worker

    from streams.app import Floorwatch

    floorwatch = Floorwatch(settings)
    w = settings.worker
    print(f"worker: metrics at http://{w.web_host}:{w.web_port}/metrics", flush=True)
    Worker(floorwatch.app, loglevel=w.log_level.upper(), quiet=True).execute_from_commandline()
    return 0


# -- simulate / replay -------------------------------------------------------------------------

def _run_until_interrupted(make_coro) -> object:
    stop = asyncio.Event()

    async def main() -> object:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await make_coro(stop)

    return asyncio.run(main())


def cmd_simulate(args: argparse.Namespace) -> int:
    from streams.simulator import SimConfig, run

    settings = _settings(args)
    start = datetime.fromisoformat(args.start) if args.start else None
    if start is not None and start.tzinfo is None:
        raise ConfigError("--start: needs an offset, e.g. 2026-11-23T08:00:00+01:00")
    config = SimConfig(seed=args.seed, duration_s=args.duration, rate=args.rate, start=start,
                       timezone=settings.site.timezone, bad_ratio=args.bad_ratio,
                       staffing_factor=args.staffing)
    produce = not args.no_produce
    if not produce and not args.out:
        raise ConfigError("--no-produce needs --out FILE (otherwise nothing would be written)")
    _run_until_interrupted(lambda stop: run(settings, config, speed=args.speed, produce=produce,
                                            out=Path(args.out) if args.out else None, stop=stop))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from streams.replay import replay

    settings = _settings(args)
    _run_until_interrupted(lambda stop: replay(settings, Path(args.file), retime=args.retime,
                                               speed=args.speed, stop=stop))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.demo import run_demo

    return run_demo(_settings(args), duration=args.duration, rate=args.rate, speed=args.speed,
                    config_path=getattr(args, "config", None))


def cmd_schema(args: argparse.Namespace) -> int:
    import orjson

    from models.schemas import topic_schemas

    schemas = topic_schemas(_settings(args).topics)
    if args.topic:
        if args.topic not in schemas:
            raise ConfigError(f"--topic: unknown topic {args.topic!r}; known: {', '.join(schemas)}")
        schemas = {args.topic: schemas[args.topic]}
    sys.stdout.write(orjson.dumps(schemas, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


# -- parser ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="floorwatch", description="Real-time KPI engine for contact centers.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=os.environ.get("FLOORWATCH_CONFIG"),
                        help="site configuration (TOML); FLOORWATCH_* environment variables override it")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", parents=[common], help="a local single-node Kafka (KRaft) on 127.0.0.1")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, default=9092)
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("worker", parents=[common], help="run the Faust worker")
    p.add_argument("--web-port", type=int, help="override worker.web_port (metrics on /metrics)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("simulate", parents=[common], help="realistic contact-center traffic into Kafka")
    p.add_argument("--rate", type=float, default=6.0,
                   help="contact arrivals per minute across the center at the daily peak (default 6)")
    p.add_argument("--duration", type=float, default=3600.0, help="simulated seconds (default 3600)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--speed", type=float, default=1.0,
                   help="simulated seconds per wall second; 0 = as fast as possible (default 1)")
    p.add_argument("--start", help="simulated start time, RFC 3339 with offset (default: now when live, "
                                   "else Monday 2025-01-06 08:00 site time, for reproducible logs)")
    p.add_argument("--bad-ratio", type=float, default=0.0,
                   help="fraction of extra malformed, invalid and duplicate records to inject")
    p.add_argument("--staffing", type=float, default=1.0, help="staffing multiplier (0.5 = half the agents)")
    p.add_argument("--out", metavar="FILE", help="also write the JSONL event log here")
    p.add_argument("--no-produce", action="store_true", help="only write --out, do not send to Kafka")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("replay", parents=[common], help="produce a JSONL event log into the input topics")
    p.add_argument("file")
    p.add_argument("--retime", action="store_true", help="shift event times so the log starts now")
    p.add_argument("--speed", type=float, default=0.0,
                   help="pace by event time: simulated seconds per wall second; 0 = as fast as possible")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("demo", parents=[common], help="broker + worker + simulator + live summary, in one go")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    p.add_argument("--rate", type=float, default=30.0, help="simulated contact arrivals per minute at peak")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("schema", parents=[common], help="print the JSON Schema of every topic's messages")
    p.add_argument("--topic", help="only this topic")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "worker":
        # aiokafka logs retried produce errors (a leader not yet elected on a topic created a
        # moment ago) as warnings; they resolve themselves and only clutter the terminal.
        logging.getLogger("aiokafka").setLevel(logging.ERROR)
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"floorwatch: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
