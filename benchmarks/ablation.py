"""What each modelling choice buys: full `streamrec evaluate` runs, one setting changed each.

python -m benchmarks.ablation ../shared/datasets/movielens-100k --out docs/ablation.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS: list[tuple[str, dict[str, str], list[str]]] = [
    ("default", {}, []),
    ("rating model: ids only (side features weight 0)", {"STREAMREC_RATING_SIDE_WEIGHT": "0"}, []),
    ("rating model: side features at full weight", {"STREAMREC_RATING_SIDE_WEIGHT": "1"}, []),
    ("no popularity prior", {"STREAMREC_POPULARITY_PRIOR": "0"}, []),
    ("popularity prior 1.0", {"STREAMREC_POPULARITY_PRIOR": "1.0"}, []),
    ("2 negatives per positive", {"STREAMREC_NEGATIVES": "2"}, []),
    ("negatives by popularity only", {"STREAMREC_UNIFORM_NEGATIVES": "0"}, []),
    ("negatives uniform only", {"STREAMREC_UNIFORM_NEGATIVES": "1"}, []),
    ("no new-item optimism", {"STREAMREC_NEW_ITEM_EVENTS": "0"}, []),
    ("micro-batches of 100 events", {}, ["--batch-size", "100"]),
]
MODEL = "streamrec FM"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/ablation.md"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, env, extra) in enumerate(VARIANTS):
            path = Path(tmp) / f"{n}.json"
            command = [
                sys.executable,
                "-m",
                "streamer.cli",
                "evaluate",
                str(args.log),
                "--json",
                str(path),
                "--no-progress",
                *extra,
            ]
            subprocess.run(command, env={**os.environ, **env}, check=True, capture_output=True)
            result = json.loads(path.read_text())
            ours = result["models"][MODEL]["all"]
            popular = result["models"]["popularity in context"]["all"]
            anchor = result["models"]["River BiasedMF"]["all"]
            rows.append(
                f"| {name} | {ours['rmse']} | {anchor['rmse']} | {ours['hit_rate']} | "
                f"{ours['hit_rate'] / popular['hit_rate']:.2f} | {ours['ndcg']} | "
                f"{ours['coverage']} | {ours['gini']} | {result['seconds']} |"
            )
            print(rows[-1], flush=True)
    header = [
        "| variant | RMSE | BiasedMF RMSE | HitRate@10 | x popularity | NDCG@10 | coverage | "
        "Gini | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
