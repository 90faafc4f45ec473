"""The re-rankers' trade-off: HitRate against coverage, Gini, intra-list diversity and
miscalibration as ``STREAMREC_DIVERSITY`` (MMR's lambda) or ``STREAMREC_CALIBRATION`` (Steck's)
moves, each value one prequential pass of the engine over the same events, side by side
(:mod:`streamer.evaluation.curve`; ``streamrec evaluate --curve`` puts it in the report).

    python -m benchmarks.diversity LOG [--knob calibration] [--lams 0,0.2,0.4,0.6]

Miscalibration: over users, the KL divergence of their last list's tag shares (mixed with 1% of
the target) from the tag shares of their last 50 items.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from streamer.evaluation.curve import KNOBS, curve_table, tradeoff
from streamer.evaluation.runner import decode
from streamer.replay import open_log
from streamer.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--lams", default="0,0.2,0.4,0.6")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--knob", choices=KNOBS, default="diversity")
    args = parser.parse_args()
    base = Settings.from_env()
    events, _ = decode(itertools.islice(open_log(args.log), args.limit), base)
    values = [float(x) for x in args.lams.split(",")]
    rows = tradeoff(
        events, base, args.knob, values, args.batch_size, lambda row: print(json.dumps(row))
    )
    print()
    print(curve_table(rows, args.knob))


if __name__ == "__main__":
    main()
