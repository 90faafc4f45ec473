"""Approximate search against exact search: recall@20 and queries/s per core, per backend.

Item vectors are drawn from a Gaussian mixture (items cluster by taste, as learned item vectors
do) with a bias column, as the index holds ``[b_i, e_i]``; queries are ``[1, q]``.
"""

from __future__ import annotations

import time
from typing import Any

import faiss
import numpy as np

from index import ExactIndex, HNSWIndex, IVFIndex

K = 20


def clustered(n: int, dim: int, rng: np.random.Generator, clusters: int = 256) -> np.ndarray:
    centres = rng.normal(size=(clusters, dim))
    points = centres[rng.integers(clusters, size=n)] + 0.5 * rng.normal(size=(n, dim))
    return (points / np.sqrt(dim)).astype(np.float32)


def with_bias(vectors: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.hstack([bias[:, None], vectors]).astype(np.float32)


def timed_search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    faiss.omp_set_num_threads(1)  # per core
    try:
        started = time.perf_counter()
        ids = index.search(queries, k).ids
        seconds = time.perf_counter() - started
    finally:
        faiss.omp_set_num_threads(0)
    return ids, len(queries) / seconds


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def run(n: int, dim: int, queries: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    items = with_bias(clustered(n, dim, rng), 0.1 * rng.normal(size=n))
    query = with_bias(clustered(queries, dim, rng), np.ones(queries))[:, :]
    query[:, 0] = 1.0
    ids = np.arange(n)
    exact = ExactIndex(dim + 1)
    exact.upsert(ids, items)
    truth, exact_qps = timed_search(exact, query, K)
    rows = [
        {
            "items": n,
            "dim": dim,
            "backend": "exact",
            "recall_at_20": 1.0,
            "queries_per_s_per_core": round(exact_qps),
            "build_s": 0.0,
        }
    ]
    for name, index, knob, values in _approximate(n, dim):
        started = time.perf_counter()
        index.upsert(ids, items)
        index.rebuild()
        build = time.perf_counter() - started
        for value in values:
            setattr(index, knob, value)
            found, qps = timed_search(index, query, K)
            rows.append(
                {
                    "items": n,
                    "dim": dim,
                    "backend": f"{name} {knob}={value}",
                    "recall_at_20": round(recall(found, truth), 4),
                    "queries_per_s_per_core": round(qps),
                    "build_s": round(build, 1),
                }
            )
    return rows


def _approximate(n: int, dim: int) -> list[tuple[str, Any, str, tuple[int, ...]]]:
    big = n > 200_000
    m, ef_construction = (16, 80) if big else (32, 200)
    hnsw = HNSWIndex(
        dim + 1, m=m, ef_construction=ef_construction, background=False, rebuild_min=n + 1
    )
    ivf = IVFIndex(dim + 1, background=False, rebuild_min=n + 1)
    return [
        ("ivf", ivf, "nprobe", (32, 64, 128, 256)),
        (f"hnsw M={m}", hnsw, "ef_search", (128, 256, 512)),
    ]


def best(rows: list[dict[str, Any]], target: float = 0.99) -> dict[str, Any]:
    """The fastest approximate setting reaching ``target`` recall (else the most accurate)."""
    approximate = [r for r in rows if r["backend"] != "exact"]
    good = [r for r in approximate if r["recall_at_20"] >= target]
    if good:
        return max(good, key=lambda r: r["queries_per_s_per_core"])
    return max(approximate, key=lambda r: r["recall_at_20"])


if __name__ == "__main__":
    import sys

    for row in run(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000, 32, queries=1000):
        print(row)
