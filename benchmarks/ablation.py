"""What each modelling choice buys: full `streamrec evaluate` runs, one setting changed each.

python -m benchmarks.ablation ../shared/datasets/movielens-100k --out ablation.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from streamer.evaluation.runner import MODEL

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
    (
        "the model alone (personal, popular for new users)",
        {"STREAMREC_STRATEGIES": "personal,popular"},
        [],
    ),
    ("no sequence features", {"STREAMREC_SEQUENCE_ITEMS": "0"}, []),
    ("seen items excluded", {"STREAMREC_SEEN_ITEMS": "exclude"}, []),
    ("20 candidates per strategy", {"STREAMREC_CANDIDATES": "20"}, []),
    ("no exploration", {"STREAMREC_EXPLORATION": "0"}, []),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log", type=Path)
    parser.add_argument("--out", type=Path, default=Path("ablation.md"))
    parser.add_argument("--parallel", type=int, default=2, help="runs at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.parallel) as pool:
        paths = [Path(tmp) / f"{n}.json" for n in range(len(VARIANTS))]
        results = list(pool.map(evaluate, [args.log] * len(paths), paths, VARIANTS))
    rows = [row(name, result) for (name, _, _), result in zip(VARIANTS, results, strict=True)]
    header = [
        "| variant | RMSE | BiasedMF RMSE | HitRate@10 | x best baseline | NDCG@10 | coverage | "
        "Gini | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + rows) + "\n")
    print("\n".join(header + rows))
    return 0


def evaluate(log: Path, path: Path, variant: tuple[str, dict[str, str], list[str]]) -> Any:
    _, env, extra = variant
    command = [sys.executable, "-m", "streamer.cli", "evaluate", str(log), "--json", str(path)]
    command += ["--no-progress", *extra]
    subprocess.run(command, env={**os.environ, **env}, check=True, capture_output=True)
    return json.loads(path.read_text())


def row(name: str, result: Any) -> str:
    ours = result["models"][MODEL]["all"]
    best = result["best_baselines"]["hit_rate"]
    anchor = result["models"]["River BiasedMF"]["all"]
    return (
        f"| {name} | {ours['rmse']} | {anchor['rmse']} | {ours['hit_rate']} | "
        f"{best['ratio']:.3f} ({best['baseline']}) | {ours['ndcg']} | "
        f"{ours['coverage']} | {ours['gini']} | {result['seconds']} |"
    )


if __name__ == "__main__":
    sys.exit(main())
