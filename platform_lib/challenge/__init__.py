"""A DeepExtremes-style prediction challenge on cubes: minicubes around extreme events, baselines,
scoring and a team leaderboard (after EarthNet2021, Requena-Mesa et al. 2021).

See ``docs/challenge.md``; ``esdl challenge make/baselines/score/leaderboard`` runs it as jobs.

>>> from platform_lib.challenge import SPLITS, KINDS
>>> SPLITS, KINDS
(('train', 'val', 'test'), ('event', 'control'))
"""

from platform_lib.challenge.baselines import BASELINES, baseline
from platform_lib.challenge.minicubes import (
    DEFAULT_DRIVERS,
    DEFAULT_TARGET,
    KINDS,
    SPLITS,
    TARGETS,
    leaking_pairs,
    make_minicubes,
    split_counts,
)
from platform_lib.challenge.oracle import demo_oracle
from platform_lib.challenge.registry import make_challenge, open_challenge, save_forecast, task_card
from platform_lib.challenge.scoring import (
    append_to_leaderboard,
    read_leaderboard,
    read_submission,
    score,
)
from platform_lib.challenge.selection import challenge_events

__all__ = [
    "BASELINES",
    "append_to_leaderboard",
    "baseline",
    "challenge_events",
    "demo_oracle",
    "make_challenge",
    "open_challenge",
    "read_leaderboard",
    "read_submission",
    "save_forecast",
    "score",
    "task_card",
    "DEFAULT_DRIVERS",
    "DEFAULT_TARGET",
    "KINDS",
    "SPLITS",
    "TARGETS",
    "leaking_pairs",
    "make_minicubes",
    "split_counts",
]
