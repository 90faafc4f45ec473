"""The evaluation report: a markdown table of every model and metric, and PNG figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = [
    ("rmse", "RMSE"),
    ("mae", "MAE"),
    ("hit_rate", "HitRate@K"),
    ("ndcg", "NDCG@K"),
    ("mrr", "MRR@K"),
    ("coverage", "coverage"),
    ("intra_list_diversity", "ILD"),
    ("novelty_bits", "novelty (bits)"),
    ("mean_popularity", "mean pop."),
    ("gini", "Gini"),
    ("long_tail_share", "long-tail share"),
    ("long_tail_coverage", "long-tail coverage"),
]


def table(result: dict[str, Any], segment: str = "all") -> str:
    """Markdown table, one row per model; '-' where a model does not do that task."""
    head = "| model | " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|---" * (len(COLUMNS) + 1) + "|"
    rows = [head, rule]
    for name, segments in result["models"].items():
        metrics = segments[segment]
        cells = []
        for key, _ in COLUMNS:
            value = metrics.get(key)
            needs = "ratings" if key in ("rmse", "mae") else "positives"
            missing = not metrics.get(needs)
            cells.append("-" if value is None or missing else f"{value:g}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def verdict(result: dict[str, Any]) -> str:
    """Per metric: the best baseline of the run and the model's ratio to it."""
    rows = ["| metric | best baseline | its value | streamrec | ratio |", "|---|---|---|---|---|"]
    for metric, best in result["best_baselines"].items():
        rows.append(
            f"| {metric} | {best['baseline']} | {best['value']:g} | {best['model']:g} | "
            f"{best['ratio']:g} |"
        )
    return "\n".join(rows)


def policy_table(result: dict[str, Any]) -> str:
    """Each strategy's estimated HitRate@(list length) and the stacker's weight on it."""
    policy = result["policy"]
    weights = policy["stacker"]
    rows = [
        "| strategy | HitRate of its own list | weight of its estimate | weight of its presence |",
        "|---|---|---|---|",
    ]
    for name, rate in policy["hit_rates"].items():
        shown = "never proposed" if rate is None else f"{rate:g}"
        rows.append(
            f"| {name} | {shown} | {weights[f'p:{name}']:g} | {weights[f'present:{name}']:g} |"
        )
    return "\n".join(rows)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # per-event pairs and per-item counts feed the figures; the JSON keeps the metrics
    bulky = ("pairs", "recommended_counts", "interaction_counts")
    slim = {k: v for k, v in result.items() if k not in bulky}
    path.write_text(json.dumps(slim, indent=1))


def group_table(result: dict[str, Any]) -> str:
    """HitRate and RMSE per user group (where the log names groups): streamrec, and per
    metric the baseline best over the whole stream.

    >>> mine = {"positives": 4, "hit_rate": 0.5, "ratings": 4, "rmse": 0.9}
    >>> result = {"best_baselines": {"hit_rate": {"baseline": "pop"}, "rmse": {"baseline": "mf"}},
    ...     "groups": {"streamrec": {"gender=F": mine}, "pop": {"gender=F": {"hit_rate": 0.25}},
    ...                "mf": {"gender=F": {"rmse": 1.0}}}}
    >>> print(group_table(result).splitlines()[2])
    | gender=F | 4 | 0.5 | pop: 0.25 | 0.9 | mf: 1.0 |
    """
    groups = result["groups"]
    best = result.get("best_baselines", {})
    ranker = best.get("hit_rate", {}).get("baseline")
    rater = best.get("rmse", {}).get("baseline")
    lines = [
        "| group | positives | streamrec HitRate | best list baseline | streamrec RMSE "
        "| best rating baseline |",
        "|---|---|---|---|---|---|",
    ]
    for group, mine in groups.get("streamrec", {}).items():
        theirs = groups.get(ranker, {}).get(group, {}).get("hit_rate")
        rated = groups.get(rater, {}).get(group, {}).get("rmse")
        lines.append(
            f"| {group} | {mine['positives']} | {mine.get('hit_rate', '-')} | "
            f"{ranker}: {theirs if theirs is not None else '-'} | {mine.get('rmse', '-')} | "
            f"{rater}: {rated if rated is not None else '-'} |"
        )
    return "\n".join(lines)


def write_report(result: dict[str, Any], directory: Path, source: str) -> Path:
    """``report.md`` and its figures in ``directory``; returns the markdown's path."""
    import matplotlib

    matplotlib.use("Agg")
    directory.mkdir(parents=True, exist_ok=True)
    figures = [
        _predicted_vs_actual(result, directory / "predicted_vs_actual.png"),
        _rolling(
            result,
            "rolling_rmse",
            "rolling RMSE (last 5,000 ratings)",
            directory / "rolling_rmse.png",
        ),
        _rolling(
            result,
            "rolling_hit_rate",
            "rolling HitRate@K (last 5,000 positives)",
            directory / "rolling_hit_rate.png",
        ),
        _popularity(result, directory / "popularity.png"),
    ]
    k = next(iter(result["models"].values()))["all"]["k"]
    lines = [
        "# streamrec evaluation",
        "",
        f"Log: `{source}`: {result['events']:,} events ({result['clicks']:,} interactions, "
        f"{result['invalid']} invalid), {result['users']:,} users, {result['catalogue']:,} items; "
        f"{result['seconds']} s. Prequential: every model predicts an event before it learns "
        f"from it; K = {k}. Batch size {result['batch_size']}.",
        "",
        "## The whole stream",
        "",
        table(result, "all"),
        "",
        "Against the best baseline of this run, per metric (ratio > 1 is better for HitRate, "
        "NDCG, MRR and coverage; < 1 for RMSE and MAE):",
        "",
        verdict(result),
        "",
        "## The policy",
        "",
        "What each strategy's own list would have hit (the policy's estimate over all buckets), "
        "and how the stacker weighs it:",
        "",
        policy_table(result),
        "",
        f"## The last part (from interaction {result['tail_from_click']:,}), where the batch SVD "
        "is scored",
        "",
        table(result, "tail"),
        "",
        "HitRate/NDCG/MRR: was the chosen item in the list the user had just before the event "
        "(positives: clicks, purchases, ratings >= 4). Coverage: share of the catalogue ever "
        "listed. ILD: intra-list diversity (1 - tag Jaccard). Novelty: mean -log2 of an item's "
        "share of users. Gini: concentration of recommendations over items (popularity bias). "
        "Long-tail share: the share of the slots shown that went to items outside the short "
        "head (the most popular items with 20% of the interactions); long-tail coverage: the "
        "share of those items ever shown.",
        "",
    ]
    if any(result.get("groups", {}).values()):
        lines += ["## By user group", "", group_table(result), ""]
    curve = result.get("curve")
    if curve:
        from streamer.evaluation.curve import curve_table

        knob = curve["knob"]
        figures.append(_curve(curve, directory / f"{knob}_tradeoff.png"))
        lines += [
            f"## The {knob} trade-off",
            "",
            f"One more prequential pass of the engine per value of `STREAMREC_{knob.upper()}`, "
            "over the same events (miscalibration: over users, the KL divergence of their last "
            "list's tag shares from their last 50 items'):",
            "",
            curve_table(curve["rows"], knob),
            "",
        ]
    lines += [f"![{p.stem}]({p.name})" for p in figures]
    path = directory / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _curve(curve: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    rows, knob = curve["rows"], curve["knob"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for metric, style in (("coverage", "o-"), ("gini", "s--"), ("intra_list_diversity", "^:")):
        ax.plot([r["hit_rate"] for r in rows], [r[metric] for r in rows], style, label=metric)
    for r in rows:
        ax.annotate(f"{r[knob]:g}", (r["hit_rate"], r["coverage"]), fontsize=8)
    ax.set(xlabel="HitRate@10", ylabel="value", title=f"streamrec: the {knob} trade-off")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _predicted_vs_actual(result: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    pairs = np.asarray(result.get("pairs") or [(0.0, 0.0)])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    levels = sorted(set(pairs[:, 1].tolist()))
    ax.boxplot(
        [pairs[pairs[:, 1] == y, 0] for y in levels],
        positions=levels,
        widths=0.35,
        showfliers=False,
    )
    ax.plot([min(levels), max(levels)], [min(levels), max(levels)], "--", color="grey")
    ax.set(
        xlabel="actual rating",
        ylabel="predicted before learning",
        title="streamrec: predicted vs actual ratings",
    )
    return _save(fig, path)


def _rolling(result: dict[str, Any], key: str, title: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, series in result["series"].items():
        points = [(p["events"], p[key]) for p in series if p[key] is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=name, linewidth=2 if name.startswith("streamrec") else 1)
    ax.set(xlabel="interactions seen", ylabel=key.replace("_", " "), title=title)
    if ax.lines:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "nothing to plot in this log", ha="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _popularity(result: dict[str, Any], path: Path) -> Path:
    """Lorenz curves: how concentrated interactions and recommendations are over items."""
    import matplotlib.pyplot as plt

    n = result["catalogue"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, counts in (
        ("interactions (catalogue)", result["interaction_counts"]),
        ("streamrec recommendations", result["recommended_counts"]),
    ):
        values = np.sort(np.array(list(counts.values()) + [0] * (n - len(counts)), float))
        share = np.cumsum(values) / max(values.sum(), 1.0)
        ax.plot(np.linspace(0, 1, len(share)), share, label=label)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="equal exposure")
    ax.set(
        xlabel="share of items (least to most frequent)",
        ylabel="cumulative share",
        title="popularity of recommended items vs the catalogue",
    )
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.clf()
    return path
