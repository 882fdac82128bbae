"""Traffic simulator: a seeded, deterministic contact center in event time.

`generate(config)` yields the Kafka records (valid events plus, on request, injected bad ones) in
emission order; `write_jsonl` saves them as an event log; `run` produces them to the input topics,
optionally paced to real time. See `streams.simulator.center` for the center being simulated.
"""

from streams.simulator.base import TOPICS, SimConfig, SimMessage, SimStats
from streams.simulator.runner import generate, run, write_jsonl

__all__ = ["TOPICS", "SimConfig", "SimMessage", "SimStats", "generate", "run", "write_jsonl"]
