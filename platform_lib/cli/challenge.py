"""``esdl challenge``: set up a prediction challenge for the team, run its baselines, score a forecast,
show the leaderboard (``docs/challenge.md``)."""

from __future__ import annotations

import argparse
import json

from platform_lib.cli.arguments import finite_number, whole_number


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``esdl challenge make|show|baselines|score|leaderboard``."""
    from platform_lib.challenge.minicubes import DEFAULT_DRIVERS, DEFAULT_TARGET, TARGETS
    from platform_lib.challenge.selection import DEFAULT_DETECT_VARIABLE, DEFAULT_QUANTILE, EVENT_SOURCES

    p = sub.add_parser(
        "challenge",
        help="a prediction challenge on extremes: make it, run the baselines, score, leaderboard",
        description="A DeepExtremes-style challenge for the team: minicubes around extreme events and "
        "matched controls, a leak-free split by event, baselines, scores and a shared leaderboard.",
    )
    cmds = p.add_subparsers(dest="challenge_command", metavar="ACTION", required=True)

    make = cmds.add_parser(
        "make",
        help="cut the minicubes from a cube and register the challenge in the team catalog",
        description="Cut minicubes (PATCH x PATCH cells, CONTEXT steps before and HORIZON steps from the "
        "start of each event) and matched controls from SOURCE, split them by event, write them "
        "atomically to the team storage and register NAME with its task card. Example: esdl challenge "
        "make heat-gpp --source esdc-demo-ts",
    )
    make.add_argument("name", help="the challenge's name in the team catalog (lower case, digits, - _ .)")
    make.add_argument("--source", required=True, help="the catalog cube to cut from (e.g. esdc-demo-ts)")
    make.add_argument(
        "--events",
        choices=EVENT_SOURCES,
        default="both",
        help="detected growing-season extremes, a demo cube's injected events, or both (default %(default)s)",
    )
    make.add_argument("--target", choices=TARGETS, default=DEFAULT_TARGET, help="default %(default)s")
    make.add_argument(
        "--drivers", nargs="+", metavar="VAR", default=list(DEFAULT_DRIVERS), help="default: %(default)s"
    )
    make.add_argument("--patch", type=whole_number(1, 256), default=8, help="cells a side (default 8)")
    make.add_argument("--context", type=whole_number(1, 460), default=10, help="steps before (default 10)")
    make.add_argument("--horizon", type=whole_number(1, 460), default=6, help="steps to forecast (default 6)")
    make.add_argument(
        "--controls", type=whole_number(0, 10), default=1, help="control minicubes per event (default 1)"
    )
    make.add_argument(
        "--split",
        nargs=3,
        type=finite_number,
        metavar=("TRAIN", "VAL", "TEST"),
        default=[0.7, 0.15, 0.15],
        help="shares of minicubes (default 0.7 0.15 0.15)",
    )
    make.add_argument("--seed", type=whole_number(0, 2**31 - 1), default=0, help="default 0")
    make.add_argument(
        "--detect-variable", default=DEFAULT_DETECT_VARIABLE, help="what detected events are extremes of"
    )
    make.add_argument(
        "--quantile", type=finite_number, default=DEFAULT_QUANTILE, help="detection quantile (default 0.995)"
    )
    make.set_defaults(func=cmd_make)

    show = cmds.add_parser("show", help="print a challenge's task card")
    show.add_argument("name")
    show.set_defaults(func=cmd_show)

    base = cmds.add_parser(
        "baselines",
        help="score every baseline (and the oracle on a demo cube) on the test split",
        description="Score the baselines on the test minicubes; --submit adds them to the leaderboard.",
    )
    base.add_argument("name")
    base.add_argument("--only", nargs="+", metavar="BASELINE", help="these baselines (default: all)")
    base.add_argument("--submit", action="store_true", help="append each to the team leaderboard")
    base.set_defaults(func=cmd_baselines)

    score = cmds.add_parser(
        "score",
        help="score a forecast of the test minicubes and add it to the leaderboard",
        description="Score SUBMISSION (a Zarr store or netCDF file with the target over (minicube, step, "
        "y, x); platform_lib.challenge.save_forecast writes one) and append it to the leaderboard.",
    )
    score.add_argument("name")
    score.add_argument("submission", help="the forecast: a Zarr store or a netCDF file")
    score.add_argument("--label", help="the leaderboard's name for it (default: the file name)")
    score.add_argument("--no-submit", action="store_true", help="score only; leave the leaderboard alone")
    score.set_defaults(func=cmd_score)

    board = cmds.add_parser("leaderboard", help="print the team leaderboard, best event skill first")
    board.add_argument("name")
    board.set_defaults(func=cmd_leaderboard)


def _table(scores: object) -> str:
    import pandas as pd

    assert isinstance(scores, pd.DataFrame)
    return scores[["rmse", "nse", "skill", "minicubes", "cells"]].to_string(float_format=lambda v: f"{v:.3f}")


def cmd_make(args: argparse.Namespace) -> int:
    from platform_lib.challenge import make_challenge, open_challenge
    from platform_lib.paths import team_catalog_path

    path = make_challenge(
        args.name,
        args.source,
        events=args.events,
        target=args.target,
        drivers=args.drivers,
        patch=args.patch,
        context=args.context,
        horizon=args.horizon,
        controls=args.controls,
        fractions=args.split,
        seed=args.seed,
        detect_variable=args.detect_variable,
        quantile=args.quantile,
    )
    card = open_challenge(args.name).attrs["task_card"]
    counts = card["split"]["minicubes"]
    print(f"wrote {path} and registered {args.name!r} in {team_catalog_path()}")
    for split, kinds in counts.items():
        print(f"  {split:5s} {kinds['event']:4d} event and {kinds['control']:4d} control minicubes")
    print(f"  events: {card['events']['given']} given, skipped: {card['events']['skipped']}")
    print(f"next: esdl challenge baselines {args.name}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from platform_lib.challenge import open_challenge

    print(json.dumps(open_challenge(args.name).attrs["task_card"], indent=2))
    return 0


def cmd_baselines(args: argparse.Namespace) -> int:
    from platform_lib.challenge import BASELINES, append_to_leaderboard, baseline, open_challenge, score
    from platform_lib.errors import EsdlError, allowed

    ds = open_challenge(args.name)
    names = args.only or list(BASELINES)
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise EsdlError(f"--only: no baseline {allowed(unknown)}; the baselines are: {allowed(BASELINES)}.")
    forecasts = {name: (lambda name=name: baseline(ds, name)) for name in names}
    source = ds.attrs["task_card"]["source"]
    if args.only is None and _is_demo(source):
        from platform_lib.catalog import open_cube
        from platform_lib.challenge import demo_oracle

        forecasts["oracle"] = lambda: demo_oracle(ds, open_cube(source))
    for name, make in forecasts.items():
        scores = score(ds, make())
        print(f"{name}:\n{_table(scores)}\n")
        if args.submit:
            append_to_leaderboard(args.name, f"baseline:{name}", scores)
    return 0


def _is_demo(source: str) -> bool:
    from platform_lib.catalog import describe_cube
    from platform_lib.errors import EsdlError

    try:
        return bool(describe_cube(source).get("demo"))
    except EsdlError:
        return False


def cmd_score(args: argparse.Namespace) -> int:
    from pathlib import Path

    from platform_lib.challenge import append_to_leaderboard, open_challenge, read_submission, score

    ds = open_challenge(args.name)
    scores = score(ds, read_submission(args.submission))
    print(_table(scores))
    if not args.no_submit:
        path = append_to_leaderboard(args.name, args.label or Path(args.submission).name, scores)
        print(f"added to {path}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from platform_lib.challenge import open_challenge, read_leaderboard

    open_challenge(args.name)  # a clear error for a name that is no challenge
    board = read_leaderboard(args.name)
    if board.empty:
        print(f"nobody has submitted to {args.name!r} yet: esdl challenge score {args.name} FORECAST")
        return 0
    cols = ["label", "user", "event_skill", "event_rmse", "control_skill", "control_rmse", "submitted_at"]
    print(board[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0
