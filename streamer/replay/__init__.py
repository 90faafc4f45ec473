"""Replay event logs into Kafka: MovieLens-100K, JSON lines in the topic formats, CSV."""

from streamer.replay.record import LogRecord
from streamer.replay.sources import open_log

__all__ = ["LogRecord", "open_log"]
