"""The ML bridge: training sets cut from cubes for PyTorch and Keras, chunk-aware and leak-free.

Core pieces are numpy-only; :mod:`platform_lib.ml.torch` and :mod:`platform_lib.ml.keras` need the
``ml`` extra (``pip install 'esdl-platform[ml]'``). See ``docs/ml.md``.

>>> from platform_lib.ml import SampleSpec
>>> SampleSpec(inputs=["kndvi"], patch={"time": 46}).x_shape(("time", "lat", "lon"))
(1, 46)
"""

from platform_lib.ml.materialise import load_training_set, materialise
from platform_lib.ml.nan import NanPolicy
from platform_lib.ml.plan import SamplePlan, plan_samples
from platform_lib.ml.spec import SampleSpec
from platform_lib.ml.splits import BlockSplit, TimeSplit
from platform_lib.ml.stats import NormStats, compute_stats
from platform_lib.ml.training_set import TrainingSet

__all__ = [
    "BlockSplit",
    "NanPolicy",
    "NormStats",
    "SamplePlan",
    "SampleSpec",
    "TimeSplit",
    "TrainingSet",
    "compute_stats",
    "load_training_set",
    "materialise",
    "plan_samples",
]
