"""Bad input to the library's public calls (issue 15): every call answers a generated bad argument with an
``EsdlError`` of a few lines that names the argument (or the bad value) -- never a ``TypeError`` from
inside pandas, zarr or numpy, never a half-written store.

Each property draws one argument of one call to spoil and gives the others good values: the spoilt one
is junk of any type (numbers that are NaN, infinite, huge or booleans; text with control characters;
bytes; lists and dicts of junk; time-zone-aware dates; NumPy arrays; a folder's path; an object) or a
near miss (a variable that does not exist, a date that is a number). The call must succeed (some junk is
fine: ``0.5`` is a good quantile) or raise ``EsdlError``; lazy results are computed, so an error cannot
hide in a dask task. Calls that write (``rechunk_cube``, ``make_regional_cube``) leave their folders as
they were when they fail.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from platform_lib.errors import EsdlError

#: an error is read, not scrolled: a message of at most this many lines
MAX_ERROR_LINES = 4

#: a tenth of the loaded profile's examples for each call: 20 with the default "ci" profile
#: (tests/conftest.py), 100 with HYPOTHESIS_PROFILE=explore
PROPERTY = settings(
    max_examples=max(settings.default.max_examples // 10, 10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

FOLDER = Path(tempfile.gettempdir())


def _aware_datetimes() -> st.SearchStrategy[dt.datetime]:
    zones = st.builds(
        dt.timezone, st.timedeltas(min_value=dt.timedelta(hours=-12), max_value=dt.timedelta(hours=14))
    )
    return st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2030, 1, 1), timezones=zones)


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2001, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, 0.5, 1.0, 1e300]),
    st.text(max_size=12),
    st.sampled_from(["", " ", "\x00", "a\nb", "☃", "2003-06-01", "kndvi", "mean"]),
    st.binary(max_size=6),
    _aware_datetimes(),
    st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2030, 1, 1)),
    st.just(FOLDER),
    st.just(np.array([1, 2])),
    st.just(np.float64("nan")),
    st.just(object()),
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@dataclass
class Call:
    """A public call: ``run(**arguments)``, good ``arguments``, and for some arguments near misses."""

    run: Callable[..., Any]
    arguments: dict[str, Any]
    near_misses: dict[str, st.SearchStrategy] = field(default_factory=dict)


def _small_cube() -> xr.Dataset:
    from platform_lib.demo import make_demo_cube

    cube = make_demo_cube(resolution=10.0, years=(2001, 2002))
    return cube.isel(lat=slice(5, 8), lon=slice(10, 13)).load()


@pytest.fixture(scope="module")
def cube() -> xr.Dataset:
    return _small_cube()


@pytest.fixture(scope="module")
def scores(cube: xr.Dataset) -> xr.Dataset:
    from platform_lib.analysis import anomaly_scores

    return anomaly_scores(cube[["air_temperature_2m", "root_moisture"]], ["REC", "KNN_Gamma"]).compute()


def _compute(result: Any) -> None:
    """Run what a lazy result left for later: an error must not wait in a dask task."""
    if isinstance(result, xr.Dataset | xr.DataArray):
        result.compute()
    labels = getattr(result, "labels", None)
    if labels is not None:
        labels.compute()


def _rechunk(**arguments: Any) -> Any:
    from platform_lib.rechunk import rechunk_cube

    return rechunk_cube(**arguments)


def _regional(**arguments: Any) -> Any:
    from platform_lib.regional import make_regional_cube

    return make_regional_cube(**arguments)


def _calls(cube: xr.Dataset, scores: xr.Dataset) -> dict[str, Call]:
    from platform_lib import describe_cube, list_cubes, open_cube
    from platform_lib.analysis import anomaly_features, anomaly_scores, detect_events, intrinsic_dimension
    from platform_lib.compute import map_cube
    from platform_lib.ml import SampleSpec, TrainingSet

    names = list(cube.data_vars)
    unknown_names = st.lists(
        st.sampled_from([*names[:3], "no_such_variable", "Kndvi"]), min_size=1, max_size=3
    )
    numeric_dates = st.tuples(st.integers(1990, 2030), st.integers(1990, 2030))
    aware_dates = st.tuples(_aware_datetimes(), _aware_datetimes())
    spec = SampleSpec(inputs=names[:2], targets=names[2:3], patch={"time": 4, "lat": 1, "lon": 1})
    return {
        "list_cubes": Call(list_cubes, {"catalog": None}, {"catalog": st.just(FOLDER)}),
        "describe_cube": Call(
            describe_cube,
            {"name": "esdc-demo-ts", "catalog": None},
            {"name": st.sampled_from(["esdc-demo", "ESDC-demo-ts", "esdc-demo-ts "])},
        ),
        "open_cube": Call(
            open_cube,
            {
                "name": "esdc-demo-ts",
                "variables": ["kndvi"],
                "bbox": (-10, 35, 30, 60),
                "time_range": ("2003-06-01", "2003-08-31"),
                "catalog": None,
            },
            {
                "variables": unknown_names,
                "time_range": numeric_dates | aware_dates,
                "bbox": st.lists(st.floats(-400, 400), min_size=3, max_size=5),
            },
        ),
        "intrinsic_dimension": Call(
            intrinsic_dimension,
            {"cube": cube, "variables": names[:4], "explained_variance": 0.95, "steps_per_year": 46},
            {"variables": unknown_names, "explained_variance": st.floats(-1, 2)},
        ),
        "anomaly_features": Call(
            anomaly_features,
            {"cube": cube, "variables": names[:2], "cycle": "median"},
            {"variables": unknown_names, "cycle": st.sampled_from(["mean", "median", "Mean", "mode", "msc"])},
        ),
        "anomaly_scores": Call(
            anomaly_scores,
            {
                "features": cube[names[:2]],
                "methods": ["REC", "KNN_Gamma"],
                "k_perc": 0.05,
                "ensemble": "mean",
            },
            {
                "methods": st.lists(st.sampled_from(["REC", "KDE", "knn", "T2"]), max_size=3),
                "k_perc": st.floats(0, 1),
            },
        ),
        "detect_events": Call(
            detect_events,
            {"scores": scores, "quantile": 0.9, "variable": "KNN_Gamma", "min_size": 2, "min_area_days": 1e6},
            {
                "variable": st.sampled_from(["REC", "rec", "T2"]),
                "min_size": st.integers(-3, 10**6),
                "min_area_days": st.floats(-1e7, 1e12),
            },
        ),
        "map_cube": Call(
            map_cube,
            {
                "func": lambda block: block.mean(axis=0),
                "cube": cube[names[:2]],
                "input_dims": ("time", "variable"),
                "output_dims": ("variable",),
            },
            {"input_dims": st.lists(st.sampled_from(["time", "variable", "depth"]), max_size=3)},
        ),
        "SampleSpec": Call(
            SampleSpec,
            {
                "inputs": names[:2],
                "patch": {"time": 4},
                "targets": names[2:3],
                "target_time": "same",
                "horizon": 1,
            },
            {"patch": st.dictionaries(st.sampled_from(["time", "lat"]), st.integers(-2, 5), max_size=2)},
        ),
        "TrainingSet": Call(
            TrainingSet,
            {"cube": cube, "spec": spec, "nan": "drop-any", "window": 2, "threads": 1},
            {"nan": st.sampled_from(["drop", "fill-mean", "keep", "Mask"])},
        ),
        "rechunk_cube": Call(
            _rechunk,
            {
                "cube": cube[names[:2]],
                "target": "map",
                "store": "OUT/cube.zarr",
                "max_mem": "64MB",
                "variables": names[:2],
                "progress": False,
            },
            {
                "target": st.dictionaries(
                    st.sampled_from(["time", "lat", "depth"]), st.integers(-1, 50), max_size=2
                )
            },
        ),
        "make_regional_cube": Call(
            _regional,
            {
                "source": cube,
                "bbox": (-80, -40, -50, -10),
                "name": "generated-region",
                "time_range": ("2001-03-01", "2001-06-30"),
                "team_dir": "OUT",
                "catalog_path": "OUT/catalog.yaml",
                "progress": False,
            },
            {"name": st.text(max_size=70), "time_range": numeric_dates | aware_dates},
        ),
    }


CALL_NAMES = [
    "list_cubes",
    "describe_cube",
    "open_cube",
    "intrinsic_dimension",
    "anomaly_features",
    "anomaly_scores",
    "detect_events",
    "map_cube",
    "SampleSpec",
    "TrainingSet",
    "rechunk_cube",
    "make_regional_cube",
]


def _snapshot(folders: list[Path]) -> set[str]:
    found: set[str] = set()
    for root in folders:
        for folder, dirs, files in os.walk(root):
            found.update(os.path.join(folder, name) for name in dirs + files)
    return found


def _named(message: str, argument: str, value: Any) -> bool:
    """Whether ``message`` names the argument or the bad value (a name, or one of a list of names)."""
    if argument.replace("_", " ") in message.replace("_", " "):
        return True
    shown = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else []
    return any(isinstance(v, str) and v and repr(v) in message for v in shown)


def _fill(arguments: dict[str, Any], out: Path) -> dict[str, Any]:
    """Put a fresh output folder where a good argument says ``OUT``."""
    return {
        k: str(out) + v.removeprefix("OUT") if isinstance(v, str) and v.startswith("OUT") else v
        for k, v in arguments.items()
    }


@pytest.mark.parametrize("call_name", CALL_NAMES)
@PROPERTY
@given(data=st.data())
def test_a_bad_argument_gets_a_short_error_that_names_it(
    demo_catalog: Path, cube: xr.Dataset, scores: xr.Dataset, call_name: str, data: st.DataObject
) -> None:
    call = _calls(cube, scores)[call_name]
    argument = data.draw(st.sampled_from(sorted(call.arguments)), label="argument")
    spoil = call.near_misses.get(argument)
    value = data.draw(JUNK if spoil is None else st.one_of(JUNK, spoil), label=argument)
    # a relative path lands in the temporary folder too, and so does the team folder a call defaults to
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp), pytest.MonkeyPatch.context() as env:
        env.setenv("ESDL_TEAM_DIR", str(Path(tmp) / "team"))
        env.delenv("ESDL_TEAM_CATALOG", raising=False)
        out = Path(tmp) / "out"
        out.mkdir()
        arguments = _fill(call.arguments, out)
        arguments[argument] = value
        before = _snapshot([Path(tmp)])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _compute(call.run(**arguments))
        except EsdlError as exc:
            message = str(exc)
            assert len(message.splitlines()) <= MAX_ERROR_LINES, message
            assert _named(message, argument, value), f"{argument}={value!r}: {message}"
            after = _snapshot([Path(tmp)])
            assert after == before, f"{call_name} failed ({message}) but wrote {sorted(after - before)}"


# --- examples: one per class of bad input the issue found, each a traceback or a silent acceptance before


@pytest.mark.parametrize(
    ("call", "said"),
    [
        # a number for a cube name or a variable
        (lambda: __import__("platform_lib").describe_cube(3), r"cube name must be a non-empty string; got 3"),
        (
            lambda: __import__("platform_lib").open_cube("esdc-demo-ts", variables=7),
            r"variables must be a name or a list of names",
        ),
        # an integer time range: 2003 was read as 2003 nanoseconds after 1970 and matched nothing
        (
            lambda: __import__("platform_lib").open_cube("esdc-demo-ts", time_range=(2003, 2004)),
            r"time_range\[0\] must be a date.*write '2003-01-01'",
        ),
        # a folder where a catalog file belongs
        (lambda: __import__("platform_lib").list_cubes(FOLDER), r"catalog must be a file; .* is a folder"),
        # four characters are not four numbers
        (
            lambda: __import__("platform_lib").open_cube("esdc-demo-ts", bbox="1234"),
            r"bbox must be four numbers",
        ),
    ],
)
def test_catalog_calls_refuse_bad_arguments_by_name(
    demo_catalog: Path, call: Callable[[], Any], said: str
) -> None:
    with pytest.raises(EsdlError, match=said):
        call()


def test_a_time_zone_aware_time_range_is_read_in_utc(demo_catalog: Path) -> None:
    """Comparing an aware date with the cubes' naive (UTC) axis was a ``TypeError``; it is converted."""
    from platform_lib import open_cube

    berlin = dt.timezone(dt.timedelta(hours=2))
    aware = open_cube(
        "esdc-demo-ts",
        time_range=(dt.datetime(2003, 6, 1, 2, tzinfo=berlin), dt.datetime(2003, 9, 1, 1, tzinfo=berlin)),
    )
    naive = open_cube("esdc-demo-ts", time_range=("2003-06-01", "2003-08-31 23:00"))
    assert aware.sizes["time"] == naive.sizes["time"] > 0
    assert (aware["time"].values == naive["time"].values).all()


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ({"explained_variance": None}, r"explained_variance must be a number above 0 and below 1; got None"),
        ({"steps_per_year": 0}, r"steps_per_year must be a whole number within 1\.\.366; got 0"),
        ({"variables": 3}, r"variables must be a name or a list of names"),
    ],
)
def test_intrinsic_dimension_refuses_bad_arguments_by_name(
    cube: xr.Dataset, arguments: dict, said: str
) -> None:
    from platform_lib.analysis import intrinsic_dimension

    with pytest.raises(EsdlError, match=said):
        intrinsic_dimension(cube, **{"variables": list(cube.data_vars)[:3], **arguments})


def test_a_k_perc_too_large_for_the_series_is_refused_before_anything_is_computed(cube: xr.Dataset) -> None:
    """It used to fail inside a dask task, at ``.compute()``, far from the call that was wrong."""
    from platform_lib.analysis import anomaly_scores

    with pytest.raises(EsdlError, match=r"k_perc=0\.999 of 92 time steps gives k = 92 nearest neighbours"):
        anomaly_scores(cube[["air_temperature_2m", "kndvi"]], ["KNN_Gamma"], k_perc=0.999)


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ({"threshold": "high"}, r"threshold must be a finite number; got 'high'"),  # a numpy UFuncTypeError
        ({"min_size": "2"}, r"min_size must be a whole number of at least 1; got '2'"),  # silently accepted
        ({"variable": ["REC"]}, r"variable must be a non-empty string"),  # unhashable
        ({"min_area_days": "1e6"}, r"min_area_days must be a number of at least 0; got '1e6'"),
        ({"min_area_days": float("nan")}, r"min_area_days must be a number of at least 0; got nan"),
    ],
)
def test_detect_events_refuses_bad_arguments_by_name(scores: xr.Dataset, arguments: dict, said: str) -> None:
    from platform_lib.analysis import detect_events

    with pytest.raises(EsdlError, match=said):
        detect_events(scores, **arguments)


def test_a_folder_that_is_not_a_store_is_named_as_such(tmp_path: Path) -> None:
    from platform_lib.ml import SampleSpec, TrainingSet

    spec = SampleSpec(inputs=["kndvi"], patch={"time": 4})
    with pytest.raises(EsdlError, match=r"cube .* is not a Zarr store \(no zarr\.json or \.zgroup in it\)"):
        TrainingSet(tmp_path, spec)


def test_reading_the_catalogs_makes_no_folder(
    demo_catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing and describing cubes created the state and team folders (and failed where the repository
    is read-only, as in the user image)."""
    from platform_lib import describe_cube, list_cubes

    monkeypatch.setenv("ESDL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ESDL_TEAM_DIR", raising=False)
    monkeypatch.delenv("ESDL_TEAM_CATALOG", raising=False)
    assert "esdc-demo-ts" in list_cubes()
    assert describe_cube("esdc-demo-ts")["name"] == "esdc-demo-ts"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a" * 300, "a" * 300 + ".yaml"])
def test_a_project_name_too_long_for_the_file_system_is_a_clear_error(name: str) -> None:
    from platform_lib.projects import load_project

    with pytest.raises(EsdlError, match=r"no project named 'aaa.*\.\.\.|no such project spec file"):
        load_project(name)


@pytest.mark.parametrize("size", [0, -3, 2.5, "8", True, np.nan, [4]])
def test_whole_number_sizes_are_checked_alike_everywhere(cube: xr.Dataset, size: object) -> None:
    """Chunk sizes, split blocks and batch sizes: one check (``number_argument``), one message."""
    from platform_lib.ml.splits import BlockSplit
    from platform_lib.regional import output_chunks

    with pytest.raises(EsdlError, match=r"chunk size of dim 'lat' must be a whole number of at least 1"):
        output_chunks({"time": 10, "lat": 4}, {"lat": size})
    with pytest.raises(EsdlError, match=r"BlockSplit block\['time'\] must be a whole number of at least 1"):
        BlockSplit({"time": size}).grid(cube)
