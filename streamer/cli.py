"""``streamrec``: the local stack, the worker, replay, reading lists, the demo."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from streamer.settings import Settings, parse_pairs

DEFAULT_DATASET = Path("../shared/datasets/movielens-100k")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        parser.error(str(exc))
    return int(args.run(settings, args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamrec", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    stack = commands.add_parser("stack", help="start/stop the local broker and Redis")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.set_defaults(run=cmd_stack)

    worker = commands.add_parser("worker", help="run the Faust worker")
    worker.add_argument("--loglevel", default="info")
    worker.set_defaults(run=cmd_worker)

    replay = commands.add_parser("replay", help="publish an event log to Kafka")
    add_replay_arguments(replay)
    replay.set_defaults(run=cmd_replay)

    rec = commands.add_parser("recommend", help="print a user's recommendations from Redis")
    rec.add_argument("user")
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument("--context", default="", help="e.g. device=tv,location=home")
    rec.set_defaults(run=cmd_recommend)

    similar = commands.add_parser("similar", help="print an item's similar items from Redis")
    similar.add_argument("item")
    similar.add_argument("-k", type=int, default=10)
    similar.set_defaults(run=cmd_similar)

    evaluate = commands.add_parser("evaluate", help="prequential evaluation with baselines")
    evaluate.add_argument("log", type=Path, help="MovieLens-100K dir, .jsonl or .csv")
    evaluate.add_argument("--json", type=Path, default=None, help="write every metric here")
    evaluate.add_argument("--report", type=Path, default=None, help="markdown + PNG report dir")
    evaluate.add_argument("--batch-size", type=int, default=1)
    evaluate.add_argument("--limit", type=int, default=None, help="first N events only")
    evaluate.add_argument("--columns", default="", help="CSV column mapping (as replay)")
    evaluate.add_argument("--type", default="rating", help="CSV event type (as replay)")
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.add_argument(
        "--ab",
        default="",
        help="A/B: arm b's settings, e.g. knn_decay=1,knn_last=5 (arm a: the current ones); "
        "users split by a stable hash, per-arm figures with 95%% intervals",
    )
    evaluate.add_argument("--ab-share", type=float, default=0.5, help="arm b's share of users")
    evaluate.add_argument(
        "--curve",
        default="",
        help="a re-ranker's trade-off in the report: diversity=0,0.2,0.4 or calibration=0,0.3 "
        "(one more engine pass over the log per value)",
    )
    evaluate.add_argument(
        "--ope",
        action="store_true",
        help="off-policy evaluation: LOG is the Open Bandit Dataset sample (obp 0.4.1's wheel, "
        "or a directory holding its obd/ tree); IPS, SNIPS and DR with 95%% intervals",
    )
    evaluate.set_defaults(run=cmd_evaluate)

    demo = commands.add_parser("demo", help="stack + worker + MovieLens replay + lists")
    demo.add_argument("--dataset", type=Path, default=None)
    demo.add_argument("--limit", type=int, default=20_000)
    demo.add_argument("--keep", action="store_true", help="leave the stack and worker running")
    demo.add_argument(
        "--workers", type=int, default=1, help="workers in the group (several: they share)"
    )
    demo.set_defaults(run=cmd_demo)
    return parser


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", type=Path, help="MovieLens-100K dir, .jsonl or .csv")
    parser.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="1 = the log's own pace, N = N times faster, 0 = as fast as possible",
    )
    parser.add_argument("--rate", type=float, default=0.0, help="cap in events/s (0 = none)")
    parser.add_argument("--limit", type=int, default=None, help="send at most this many")
    parser.add_argument(
        "--columns",
        default="",
        help="CSV column mapping, e.g. user=userId,item=movieId,value=rating",
    )
    parser.add_argument("--type", default="rating", help="CSV event type when no column says")
    parser.add_argument("--no-progress", action="store_true")


def _pairs(text: str) -> dict[str, str]:
    """``a=1,b=2`` from the command line; a malformed pair ends the command with its reason."""
    try:
        return parse_pairs(text)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def cmd_stack(settings: Settings, args: argparse.Namespace) -> int:
    from streamer.stack import LocalStack

    stack = LocalStack(settings)
    if args.action == "up":
        stack.up()
    elif args.action == "down":
        stack.down()
    print(json.dumps(stack.status(), indent=2))
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    # A stop asked for while the worker is still importing and starting (before Faust's own
    # handlers are installed) is a clean exit, not a death by signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    from streamer.worker import run_worker

    run_worker(settings, args.loglevel)
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from streamer.replay import open_log
    from streamer.replay.producer import replay
    from streamer.replay.sources import LogError

    try:
        records = open_log(args.log, _pairs(args.columns), args.type)
        summary = replay(
            records, settings, args.speed, args.rate, args.limit, progress=not args.no_progress
        )
    except LogError as exc:
        print(f"streamrec replay: {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0


def cmd_recommend(settings: Settings, args: argparse.Namespace) -> int:
    import redis

    from streamer.client import get_recommendations

    client = redis.Redis.from_url(settings.redis_url)
    result = get_recommendations(
        client,
        args.user,
        args.k,
        _pairs(args.context),
        settings.redis_prefix,
        settings.pop_context_keys,
    )
    print(json.dumps(result, indent=2))
    return 0


def cmd_similar(settings: Settings, args: argparse.Namespace) -> int:
    import redis

    from streamer.client import get_similar

    client = redis.Redis.from_url(settings.redis_url)
    print(json.dumps(get_similar(client, args.item, args.k, settings.redis_prefix), indent=2))
    return 0


def cmd_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    import itertools

    from streamer.evaluation.report import table, verdict, write_json, write_report
    from streamer.evaluation.runner import run_evaluation
    from streamer.replay import open_log
    from streamer.replay.sources import LogError

    if args.ab:
        return _evaluate_ab(settings, args)
    if args.ope:
        return _evaluate_ope(args)
    try:
        records = itertools.islice(open_log(args.log, _pairs(args.columns), args.type), args.limit)
        result = run_evaluation(
            records,
            settings,
            args.batch_size,
            progress=not args.no_progress,
            curve=_curve(args.curve) if args.curve else None,
        )
    except LogError as exc:
        print(f"streamrec evaluate: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    print()
    print(verdict(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.report:
        print(f"wrote {write_report(result, args.report, str(args.log))}")
    return 0


def _curve(text: str) -> tuple[str, list[float]]:
    """``--curve knob=v1,v2,...``: the re-ranker's setting and its values."""
    from streamer.evaluation.curve import KNOBS

    knob, _, values = text.partition("=")
    if knob not in KNOBS or not values:
        raise SystemExit(f"--curve: expected {' or '.join(KNOBS)}=v1,v2,..., got {text!r}")
    try:
        return knob, [float(v) for v in values.split(",")]
    except ValueError:
        raise SystemExit(f"--curve: values must be numbers, got {values!r}") from None


def _evaluate_ope(args: argparse.Namespace) -> int:
    from streamer.evaluation.ope import obd_report, obd_table

    try:
        result = obd_report(args.log)
    except (OSError, KeyError, ValueError) as exc:
        print(f"streamrec evaluate --ope: {args.log}: {exc}", file=sys.stderr)
        return 2
    return _print_and_write(args, result, obd_table(result), "ope.md", "Off-policy evaluation")


def _evaluate_ab(settings: Settings, args: argparse.Namespace) -> int:
    import itertools

    from streamer.evaluation.ab import ab_table, run_ab
    from streamer.replay import open_log

    changes = ab_changes(args.ab)
    records = itertools.islice(open_log(args.log, _pairs(args.columns), args.type), args.limit)
    result = run_ab(records, settings, changes, args.ab_share, args.batch_size)
    return _print_and_write(args, result, ab_table(result), "ab.md", "A/B")


def _print_and_write(
    args: argparse.Namespace, result: dict[str, Any], table: str, name: str, title: str
) -> int:
    """Print ``table``; write ``result`` to ``--json`` and the table to ``--report``/``name``."""
    from streamer.evaluation.report import write_json

    print(table)
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.report:
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / name).write_text(f"# {title}: {args.log}\n\n{table}\n")
        print(f"wrote {args.report / name}")
    return 0


def ab_changes(text: str) -> dict[str, object]:
    """Arm b's settings from ``name=value,...`` (setting names, typed as the settings are).

    >>> ab_changes("knn_decay=1, knn_last=5")
    {'knn_decay': 1.0, 'knn_last': 5}
    """
    try:
        return Settings(ab=text).ab_changes()
    except ValueError as exc:
        raise SystemExit(f"--ab: {exc}") from None


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from streamer.demo import run_demo

    return run_demo(settings, args.dataset, args.limit, args.keep, args.workers)


if __name__ == "__main__":
    sys.exit(main())
