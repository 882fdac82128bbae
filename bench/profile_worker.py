"""`floorwatch worker` under yappi, profiling only between two control files.

    BENCH_PROFILE_DIR=DIR python -m bench.profile_worker      # + the usual FLOORWATCH_* variables

The worker starts unprofiled. When a file DIR/start-NAME appears, yappi starts on every thread
(builtins included, so C functions such as pydantic's validate_json and orjson show up), on the
clock named by BENCH_PROFILE_CLOCK ("cpu", default, or "wall"). When DIR/stop-NAME appears it stops
and writes DIR/NAME.pstat (for snakeviz / pstats), DIR/NAME.json (top functions by own and by
total time) and finally DIR/done-NAME; then it waits for the next window. The harness
(`python -m bench.ingest --profile`) drives this: a window while ingest drains the input backlog,
one while the engine drains the internal topic.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import traceback
from pathlib import Path

import yappi

TOP = 40


def _name(stat) -> str:
    module = stat.module or ""
    ours = re.search(r"/(streams|models|bench)/[^/]+\.py$", module)
    if "site-packages/" in module:
        module = module.split("site-packages/", 1)[1]
    elif ours:
        module = module[ours.start() + 1:]
    elif "/lib/python3" in module:
        module = module.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return f"{module}:{stat.lineno} {stat.name}" if stat.lineno else f"{module} {stat.name}".strip()


def _rows(stats, key: str) -> list[dict]:
    stats.sort(key, "desc")
    return [{"function": _name(s), "ncall": s.ncall, "tsub_s": round(s.tsub, 4), "ttot_s": round(s.ttot, 4)}
            for s in list(stats)[:TOP]]


def _clock() -> str:
    clock = yappi.get_clock_type()  # a str, or a dict with "type" in some versions
    return clock.get("type", str(clock)) if isinstance(clock, dict) else str(clock)


def _wait_for(directory: Path, prefix: str) -> str:
    while True:
        for path in directory.glob(f"{prefix}-*"):
            return path.name[len(prefix) + 1:]
        time.sleep(0.05)


def _control(directory: Path) -> None:
    """Profile windows one after another: start-NAME .. stop-NAME -> NAME.pstat, NAME.json, done-NAME."""
    yappi.set_clock_type(os.environ.get("BENCH_PROFILE_CLOCK", "cpu"))
    while True:
        name = _wait_for(directory, "start")
        (directory / f"start-{name}").unlink()
        yappi.clear_stats()
        yappi.start(builtins=True, profile_threads=True)
        started = time.monotonic()
        while not (directory / f"stop-{name}").exists():
            time.sleep(0.05)
        (directory / f"stop-{name}").unlink()
        yappi.stop()
        seconds = time.monotonic() - started
        stats = yappi.get_func_stats()
        stats.save(str(directory / f"{name}.pstat"), type="pstat")
        threads = [{"name": t.name, "id": t.id, "ttot_s": round(t.ttot, 3)} for t in yappi.get_thread_stats()]
        (directory / f"{name}.json").write_text(json.dumps({
            "clock": _clock(), "profiled_s": round(seconds, 2), "threads": threads,
            "by_own_time": _rows(stats, "tsub"), "by_total_time": _rows(stats, "ttot")}, indent=1))
        (directory / f"done-{name}").touch()


def main() -> int:
    directory = Path(os.environ["BENCH_PROFILE_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    def control() -> None:
        try:
            _control(directory)
        except BaseException:  # tell the harness instead of leaving it waiting
            (directory / "error").write_text(traceback.format_exc())
            raise

    threading.Thread(target=control, name="bench-profiler", daemon=True).start()
    from streams.cli import main as cli_main

    return cli_main(["worker"])


if __name__ == "__main__":
    sys.exit(main())
