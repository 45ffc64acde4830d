"""Cube analyses: intrinsic dimension and multivariate extreme events.

>>> from platform_lib.analysis import BEST_METHODS, METHODS, TIME_SCALES
>>> METHODS, BEST_METHODS  # the anomaly scores, and those the default ensemble averages
(('KDE', 'REC', 'KNN_Gamma', 'KNN_Delta', 'T2'), ('KDE', 'REC', 'KNN_Gamma'))
>>> TIME_SCALES  # what decompose_time_scales splits a series into
('long_term', 'annual', 'fast')
"""

from platform_lib.analysis.cycles import cycle_dominance
from platform_lib.analysis.events import (
    Events,
    cell_area_km2,
    detect_events,
    event_skill,
    event_table,
    label_events,
)
from platform_lib.analysis.extremes import (
    BEST_METHODS,
    METHODS,
    anomaly_features,
    anomaly_scores,
    anomaly_scores_block,
    ewma,
    quantile_scores,
    raw_scores,
    time_delay_embedding,
)
from platform_lib.analysis.intrinsic import (
    TIME_SCALES,
    decompose_time_scales,
    intrinsic_dimension,
    intrinsic_dimension_block,
)
from platform_lib.analysis.trajectories import (
    mann_kendall,
    pc_cube,
    pc_trajectories,
    theil_sen,
    trajectory_trends,
    weighted_pca,
)

__all__ = [
    "weighted_pca",
    "trajectory_trends",
    "theil_sen",
    "pc_trajectories",
    "pc_cube",
    "mann_kendall",
    "BEST_METHODS",
    "METHODS",
    "TIME_SCALES",
    "Events",
    "anomaly_features",
    "anomaly_scores",
    "anomaly_scores_block",
    "cell_area_km2",
    "cycle_dominance",
    "decompose_time_scales",
    "detect_events",
    "event_skill",
    "event_table",
    "ewma",
    "intrinsic_dimension",
    "intrinsic_dimension_block",
    "label_events",
    "quantile_scores",
    "raw_scores",
    "time_delay_embedding",
]
