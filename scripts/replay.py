#!/usr/bin/env python3
"""Replay an event log into Kafka (same as ``streamrec replay``).

python scripts/replay.py ../shared/datasets/movielens-100k --speed 0 --limit 20000
"""

import sys

from streamer.cli import main

if __name__ == "__main__":
    sys.exit(main(["replay", *sys.argv[1:]]))
