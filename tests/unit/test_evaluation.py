"""``streamrec evaluate`` end to end on a small log with a known answer, report included."""

import json
import random

from streamer.cli import main
from streamer.evaluation.runner import MODEL, run_evaluation
from streamer.replay.record import from_value
from streamer.settings import Settings


def _log(n=3000, seed=0):
    """Sessions that walk a fixed item sequence (item j is followed by j + 1) and come back
    to their last item: item-kNN and recent items both have something to find."""
    rng = random.Random(seed)
    values = [
        {"topic": "items", "item": str(i), "ts": 0.0, "tags": [f"g{i // 10}"]} for i in range(60)
    ]
    ts = 1.0
    for session in range(n // 6):
        item = rng.randrange(55)
        for _ in range(6):
            ts += 1.0
            values.append({"user": f"s{session}", "item": str(item), "type": "click", "ts": ts})
            item = item if rng.random() < 0.3 else min(item + 1, 59)
        values.append(
            {
                "user": str(session),
                "item": str(rng.randrange(60)),
                "type": "rating",
                "value": float(rng.randint(1, 5)),
                "ts": ts,
            }
        )
    return values


def test_every_baseline_is_scored_over_the_same_positives_and_the_best_is_named():
    result = run_evaluation(map(from_value, _log()), Settings(n_factors=4), progress=False)
    models = result["models"]
    for name in (
        "item-kNN (last 5, window 10)",
        "item-kNN (last 5, window 50)",
        "item-kNN (last 20, window 10)",
        "item-kNN (last 20, window 50)",
        "recent",
        "popularity",
        "popularity in context",
        "River BiasedMF",
        MODEL,
    ):
        assert name in models
    streaming = [n for n in models if models[n]["all"]["positives"] and "batch" not in n]
    positives = {models[n]["all"]["positives"] for n in streaming}
    assert len(streaming) == 8 and len(positives) == 1  # each asked about every positive
    lists = {models[n]["all"]["lists"] for n in streaming}
    assert lists == positives  # and audited over the list it had at that positive
    best = result["best_baselines"]["hit_rate"]
    baseline_rates = [
        m["all"]["hit_rate"] for n, m in models.items() if n != MODEL and m["all"]["positives"]
    ]
    assert best["value"] == max(baseline_rates)
    assert best["ratio"] == round(models[MODEL]["all"]["hit_rate"] / best["value"], 4)
    # the walk is learnable: the fused lists beat every baseline, which each see half of it
    assert best["ratio"] > 1.0, result["best_baselines"]
    assert result["resets"] == result["nonfinite"] == 0


def test_evaluate_writes_the_report_with_its_figures(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(value) for value in _log(600)))
    out = tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                str(log),
                "--no-progress",
                "--report",
                str(out),
                "--json",
                str(tmp_path / "r.json"),
                "--curve",
                "diversity=0.1,0.8",  # the run's own (the default) and more
            ]
        )
        == 0
    )
    text = (out / "report.md").read_text()
    assert "best baseline" in text and MODEL in text
    figures = ("predicted_vs_actual", "rolling_rmse", "rolling_hit_rate", "popularity")
    for figure in (*figures, "diversity_tradeoff"):
        assert (out / f"{figure}.png").stat().st_size > 1000
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["best_baselines"]
    # the curve's row at the run's own value is the run's engine: the same HitRate as the run
    own, diverse = result["curve"]["rows"]
    assert own["hit_rate"] == result["models"][MODEL]["all"]["hit_rate"]
    assert diverse["intra_list_diversity"] > own["intra_list_diversity"]
    assert "## The diversity trade-off" in text


def test_accuracy_is_reported_by_user_group_for_every_model():
    """Users carry a group in their events' context (as MovieLens' age and gender): every
    model's positives and ratings split over the groups and add up to its totals."""
    values = _log(1800)
    for value in values:
        if "user" in value:
            value["context"] = {"gender": "F" if hash(value["user"]) % 2 else "M"}
    result = run_evaluation(map(from_value, values), Settings(n_factors=4), progress=False)
    for name, groups in result["groups"].items():
        totals = result["models"][name]["all"]
        assert set(groups) == {"gender=F", "gender=M"}, name
        assert sum(g["positives"] for g in groups.values()) == totals["positives"], name
        assert sum(g["ratings"] for g in groups.values()) == totals["ratings"], name
        if totals["positives"]:
            hits = sum(g["hit_rate"] * g["positives"] for g in groups.values() if g["positives"])
            assert abs(hits / totals["positives"] - totals["hit_rate"]) < 1e-3, name


def test_the_audit_reads_each_lists_diversity_from_its_items_tags_as_they_are_now():
    """Lists interleave (a batch's users), repeat (a user's positives), and an item's tags
    may change between two showings of the same list: its diversity follows the tags."""
    from streamer.evaluation.metrics import ListAudit, intra_list_diversity

    tags = {1: ["x"], 2: ["x"], 3: ["y"]}
    audit = ListAudit(catalogue_size=3, k=3)
    shown = [(1, 2), (1, 3), (1, 3), (1, 2)]  # two users' lists, interleaved
    for items in shown:
        audit.update(items, {}, tags, users=2)
    expected = [intra_list_diversity(items, tags) for items in shown]
    tags[2] = ["z"]  # new metadata: the first list is now as diverse as the second
    audit.update((1, 2), {}, tags, users=2)
    expected.append(1.0)
    assert audit.report()["intra_list_diversity"] == round(sum(expected) / len(expected), 4)


def test_the_audit_is_its_definitions_computed_again_from_every_list():
    """The live audit (one pass per positive, its tag masks and diversities cached) against
    each figure computed from scratch over the same lists: coverage, intra-list diversity,
    novelty, mean popularity, Gini, with items' tags and counts changing between lists."""
    import math
    from collections import Counter

    import numpy as np

    from streamer.evaluation.metrics import ListAudit, gini, intra_list_diversity

    rng = np.random.default_rng(2)
    catalogue, k = 40, 5
    audit = ListAudit(catalogue_size=catalogue, k=k)
    tags = {i: tuple(f"t{t}" for t in rng.choice(6, int(rng.integers(0, 3)), replace=False))
            for i in range(catalogue)}  # fmt: skip
    counts: Counter = Counter()
    lists, diversities, novelty, popularity, users = [], [], [], [], 10  # some counts pass it
    for _ in range(600):
        shown = rng.choice(catalogue, int(rng.integers(0, 8)), replace=False).tolist()
        if rng.random() < 0.3 and lists:  # a list shown again
            shown = lists[int(rng.integers(0, len(lists)))]
        audit.update(shown, counts, tags, users)
        top = shown[:k]
        lists.append(shown)
        if top:
            diversities.append(intra_list_diversity(top, tags))
        for item in top:
            novelty.append(-math.log2(min((counts[item] + 1.0) / (users + 1.0), 1.0)))
            popularity.append(counts[item])
        counts[int(rng.integers(0, catalogue))] += 1  # the stream moves on
        if rng.random() < 0.05:  # new metadata for an item
            changed = int(rng.integers(0, catalogue))
            tags[changed] = (f"t{int(rng.integers(0, 6))}",)
    report = audit.report()
    exposure = Counter(item for shown in lists for item in shown[:k])
    assert report["lists"] == len(lists)
    assert report["empty_lists"] == sum(1 for shown in lists if not shown)
    assert report["coverage"] == round(len(exposure) / catalogue, 4)
    assert report["intra_list_diversity"] == round(sum(diversities) / len(diversities), 4)
    assert report["novelty_bits"] == round(sum(novelty) / len(novelty), 4)
    assert report["mean_popularity"] == round(sum(popularity) / len(popularity), 4)
    padded = [*exposure.values(), *[0] * (catalogue - len(exposure))]
    assert report["gini"] == gini(padded)
