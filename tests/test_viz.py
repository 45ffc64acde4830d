"""Plots rendered to PNG with Agg, the widget explorer and the Lexcube widget built offline."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
pytest.importorskip("ipywidgets")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backend_bases import MouseEvent  # noqa: E402

from platform_lib import viz  # noqa: E402
from platform_lib.errors import EsdlError, MissingExtraError  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def make_cube(lons=None) -> xr.Dataset:
    """A small (time, lat, lon) cube: a warm south, a seasonal cycle, an 'ocean' of NaN for kNDVI."""
    times = pd.date_range("2003-01-05", periods=23, freq="16D")
    lat = np.arange(35.5, 45.5, 1.0)
    lon = np.arange(-9.5, 10.5, 1.0) if lons is None else np.asarray(lons, dtype=float)
    t = np.arange(len(times))[:, None, None]
    y = np.arange(len(lat))[None, :, None]
    x = np.arange(len(lon))[None, None, :]
    temp = (20.0 - 0.8 * y + 8.0 * np.sin(2 * np.pi * t / 23.0) + 0.1 * x).astype("float32")
    kndvi = (0.3 + 0.02 * y + 0.0 * t + 0.001 * x).astype("float32")
    kndvi = np.broadcast_to(kndvi, temp.shape).copy()
    kndvi[:, :3, :5] = np.nan  # sea
    return xr.Dataset(
        {
            "air_temperature_2m": (
                ("time", "lat", "lon"),
                temp,
                {"long_name": "Air temperature at 2 m", "units": "degC"},
            ),
            "kndvi": (("time", "lat", "lon"), kndvi, {"long_name": "Kernel NDVI", "units": "1"}),
        },
        coords={"time": times, "lat": lat, "lon": lon},
    )


def _png_pixels(fig, path: Path) -> np.ndarray:
    fig.savefig(path, dpi=60)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path)


def test_plot_map_renders_the_selected_step_with_metadata(tmp_path):
    ds = make_cube()
    ax = viz.plot_map(ds, "air_temperature_2m", time="2003-03-25")  # nearest step
    assert ax.get_title() == "Air temperature at 2 m, 2003-03-26"
    colorbar_ax = ax.child_axes[0]  # an inset of the map: as tall as the map
    assert colorbar_ax.get_ylabel() == "Air temperature at 2 m [degC]"
    assert ax.get_xlabel().startswith("longitude") and ax.get_ylabel().startswith("latitude")
    mesh = ax.collections[0]
    expected = ds["air_temperature_2m"].sel(time="2003-03-26").values
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(expected.shape), expected)
    pixels = _png_pixels(ax.figure, tmp_path / "map.png")
    colours = np.unique(pixels[..., :3].reshape(-1, 3).round(2), axis=0)
    assert len(colours) > 20, "a rendered map has many colours, not a blank canvas"


def test_plot_map_time_mean_nan_and_errors(tmp_path):
    ds = make_cube()
    ax = viz.plot_map(ds, "kndvi")
    assert ax.get_title() == "Kernel NDVI, mean 2003-01-05..2003-12-23"
    arr = np.ma.getdata(ax.collections[0].get_array()).reshape(10, 20)
    assert np.isnan(arr[:3, :5]).all() and np.isfinite(arr[3:]).all()
    _png_pixels(ax.figure, tmp_path / "mean.png")
    with pytest.raises(EsdlError, match="several variables"):
        viz.plot_map(ds)
    with pytest.raises(EsdlError, match="no variable 'kndvy'.*Did you mean 'kndvi'"):
        viz.plot_map(ds, "kndvy")
    with pytest.raises(EsdlError, match="time index 99 is outside 0..22"):
        viz.plot_map(ds, "kndvi", time=99)


def test_plot_map_across_the_dateline_keeps_longitudes_contiguous():
    ds = make_cube(lons=[*np.arange(170.5, 180, 1.0), *np.arange(-179.5, -169, 1.0)])
    ax = viz.plot_map(ds, "air_temperature_2m", time=0)
    xs = ax.collections[0].get_coordinates()[0, :, 0]
    assert np.all(np.diff(xs) > 0) and xs.max() > 180
    lo, hi = ax.get_xlim()
    assert hi - lo < 25, "the map spans the 20-degree region, not the whole globe"


def test_plot_timeseries_pixel_and_area_mean(tmp_path):
    ds = make_cube()
    ax = viz.plot_timeseries(ds, "air_temperature_2m", lat=40.2, lon=3.1)
    assert ax.get_title() == "Air temperature at 2 m, 40.50°N, 3.50°E"
    assert ax.get_ylabel() == "Air temperature at 2 m [degC]"
    np.testing.assert_allclose(
        ax.lines[0].get_ydata(), ds["air_temperature_2m"].sel(lat=40.5, lon=3.5).values, rtol=1e-6
    )
    ax2 = viz.plot_timeseries(ds, "kndvi")
    assert ax2.get_title() == "Kernel NDVI, area mean"
    k = ds["kndvi"].values.astype("float64")
    w = np.cos(np.deg2rad(ds["lat"].values))[None, :, None] * np.isfinite(k)
    expected = np.nansum(k * w, axis=(1, 2)) / w.sum(axis=(1, 2))
    np.testing.assert_allclose(ax2.lines[0].get_ydata(), expected, rtol=1e-5)
    pixels = _png_pixels(ax.figure, tmp_path / "ts.png")
    assert pixels.std() > 0.05
    with pytest.raises(EsdlError, match="both lat and lon"):
        viz.plot_timeseries(ds, "kndvi", lat=40)


def _click(explorer, lon: float, lat: float) -> None:
    canvas = explorer.map_figure.canvas
    canvas.draw()  # a user clicks a drawn map: positions are final
    x, y = explorer.map_ax.transData.transform((lon, lat))
    canvas.callbacks.process("button_press_event", MouseEvent("button_press_event", canvas, x, y, button=1))


def test_explorer_without_ipympl_renders_png_and_follows_the_controls():
    ds = make_cube()
    ex = viz.explore(ds, interactive=False)
    assert ex.variable_dropdown.options == ("air_temperature_2m", "kndvi")
    png = ex._map_view.value
    assert png[:4] == b"\x89PNG" and len(png) > 2000
    assert ex.map_ax.get_title().endswith("2003-01-05")

    ex.time_slider.value = 5  # as if the user moved the slider
    assert ex.time_index == 5 and ex.map_ax.get_title().endswith(str(ds.time[5].dt.date.item()))
    mesh = np.asarray(ex.map_ax.collections[0].get_array()).reshape(10, 20)
    np.testing.assert_array_equal(mesh, ds["air_temperature_2m"].isel(time=5).values)
    assert ex._map_view.value != png

    _click(ex, lon=6.2, lat=43.9)
    assert (ex.lat, ex.lon) == (43.5, 6.5)
    assert (ex.lat_box.value, ex.lon_box.value) == (43.5, 6.5)
    series = ex.series_ax.lines[0].get_ydata()
    np.testing.assert_allclose(series, ds["air_temperature_2m"].sel(lat=43.5, lon=6.5).values, rtol=1e-6)
    assert "43.50°N, 6.50°E" in ex.status.value and "23 of 23" in ex.status.value

    ex.lat_box.value = 36.0  # typing a latitude picks that pixel, and says it snapped
    assert ex.lat == 35.5 and "snapped to the cell centre 35.50°N, 6.50°E" in ex.status.value
    ex.variable_dropdown.value = "kndvi"
    assert ex.series_ax.get_ylabel() == "Kernel NDVI [1]"
    assert ex.select_pixel(35.5, -9.5) == (38.5, -9.5)  # the Atlantic: the nearest cell with data, said so
    assert (
        "no data over ocean at 35.50°N, 9.50°W (nearest land with data: 38.50°N, 9.50°W)" in ex.status.value
    )
    assert "23 of 23" in ex.status.value and (ex.lat_box.value, ex.lon_box.value) == (38.5, -9.5)
    assert ex.widget.children[1].children == (ex._map_view, ex._series_view)


def test_explorer_with_ipympl_click_selects_a_pixel():
    pytest.importorskip("ipympl")
    ex = viz.explore(make_cube(), "kndvi", time="2003-06-01", interactive=True)
    from ipympl.backend_nbagg import Canvas

    assert isinstance(ex._map_view, Canvas) and ex.map_figure.canvas is ex._map_view
    assert ex.time_index == 9
    _click(ex, lon=-8.4, lat=38.6)
    assert (ex.lat, ex.lon) == (38.5, -8.5)
    with pytest.raises(EsdlError, match="no \\(time, lat, lon\\) variable 'ndvi'"):
        viz.explore(make_cube(), "ndvi", interactive=True)


def test_lexcube_widget_builds_offline_from_a_dataarray():
    lexcube = pytest.importorskip("lexcube")
    da = make_cube()["air_temperature_2m"]
    w = viz.lexcube_view(da)
    assert isinstance(w, lexcube.Cube3DWidget)
    lo, hi = viz.colour_limits(da)
    assert (w.vmin, w.vmax) == pytest.approx((lo, hi)) and w.cmap == "RdYlBu_r"
    assert w.api_metadata, "the widget's tile server described the cube"
    with pytest.raises(EsdlError, match="3-D \\(time, lat, lon\\)"):
        viz.lexcube_view(da.isel(time=0))


def test_missing_lexcube_gives_install_hint_and_explorer_still_works(monkeypatch):
    monkeypatch.setitem(sys.modules, "lexcube", None)  # what Python does when it is not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'esdl-platform\[viz\]'") as err:
        viz.lexcube_view(make_cube()["kndvi"])
    assert "GPL-3.0" in str(err.value) and isinstance(err.value, ImportError)
    assert viz.explore(make_cube(), interactive=False).variable == "air_temperature_2m"


def test_viz_imports_without_the_viz_extra():
    code = textwrap.dedent(
        """
        import sys
        for m in ("matplotlib", "ipywidgets", "lexcube", "ipympl"):
            sys.modules[m] = None
        import numpy as np, xarray as xr
        import platform_lib.viz as viz
        try:
            viz.plot_map(xr.DataArray(np.ones((2, 2)), dims=("lat", "lon"),
                                      coords={"lat": [0, 1], "lon": [0, 1]}))
        except ImportError as exc:
            print(exc)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (
        "plotting needs 'matplotlib', which is not installed: pip install 'esdl-platform[viz]'" in out.stdout
    )


def _inside(inner, outer, slack: float = 1.0) -> bool:
    return (
        inner.x0 >= outer.x0 - slack
        and inner.y0 >= outer.y0 - slack
        and inner.x1 <= outer.x1 + slack
        and inner.y1 <= outer.y1 + slack
    )


@pytest.mark.parametrize(
    ("region", "lons", "lats"),
    [
        ("global", np.arange(-179.5, 180, 1.0), np.arange(-89.5, 90, 1.0)),
        ("tall", np.arange(10.5, 25, 1.0), np.arange(-39.5, 40, 1.0)),  # Africa's west coast, a narrow strip
        ("wide", np.arange(-99.5, 100, 1.0), np.arange(35.5, 45, 1.0)),
        ("dateline", [*np.arange(160.5, 180, 1.0), *np.arange(-179.5, -160, 1.0)], np.arange(55.5, 72, 1.0)),
    ],
)
def test_a_map_reads_coastlines_a_colour_bar_as_tall_as_the_map_and_text_inside(region, lons, lats, tmp_path):
    """What a person sees: coastlines where the coasts are, the colour bar exactly as tall as the map
    (not three times it), degrees square, and long titles and labels wrapped inside the figure."""
    lat, lon = np.asarray(lats), np.asarray(lons)
    values = np.cos(np.deg2rad(lat))[:, None] * np.ones(lon.size)[None, :]
    da = xr.DataArray(
        values[None].astype("float32"),
        dims=("time", "lat", "lon"),
        name="gross_primary_productivity",
        coords={"time": pd.date_range("2003-07-04", periods=1), "lat": lat, "lon": lon},
        attrs={
            "long_name": "Gross primary productivity of the terrestrial biosphere per unit area",
            "units": "g C m-2 d-1",
        },
    )
    ax = viz.plot_map(da, time=0)
    fig = ax.figure
    fig.savefig(tmp_path / f"{region}.png", dpi=80)  # draws: positions are final
    renderer = fig.canvas.get_renderer()
    box, bar = ax.get_window_extent(renderer), ax.child_axes[0].get_window_extent(renderer)
    assert bar.height == pytest.approx(box.height, rel=1e-6) and bar.y0 == pytest.approx(box.y0, rel=1e-6)
    assert bar.x0 > box.x1 and bar.width == pytest.approx(0.05 * box.height, rel=1e-3)
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    assert box.width / box.height == pytest.approx((x1 - x0) / (y1 - y0), rel=0.02)  # degrees are square
    for text in (ax.title, ax.child_axes[0].yaxis.label, ax.xaxis.label, ax.yaxis.label):
        assert _inside(text.get_window_extent(renderer), fig.bbox), (region, text.get_text())
    assert "\n" in ax.get_title() or ax.title.get_window_extent(renderer).width < fig.bbox.width
    coast = np.concatenate(ax.collections[-1].allsegs[0])  # the coastline contour, drawn last
    assert x0 - 1 <= coast[:, 0].min() and coast[:, 0].max() <= x1 + 1
    known = {  # a point on a real coast inside each region (plot longitudes)
        "global": (-9.5, 38.7),  # Lisbon
        "tall": (13.2, -8.8),  # Luanda
        "wide": (-76.0, 38.0),  # Chesapeake Bay
        "dateline": (190.3, 65.6),  # Wales, Alaska (-169.7 east: past 180 on this map)
    }[region]
    assert np.hypot(*(coast - known).T).min() < 0.5, f"no coastline near {known} on the {region} map"


def test_the_explorers_date_ticks_do_not_overlap():
    times = pd.date_range("2001-01-05", periods=20 * 46, freq="8D")
    ds = xr.Dataset(
        {
            "t": (
                ("time", "lat", "lon"),
                np.random.default_rng(0).normal(size=(times.size, 2, 2)).astype("float32"),
            )
        },
        coords={"time": times, "lat": [40.5, 41.5], "lon": [0.5, 1.5]},
    )
    ex = viz.explore(ds, interactive=False)
    ex.series_figure.canvas.draw()
    renderer = ex.series_figure.canvas.get_renderer()
    labels = [t for t in ex.series_ax.get_xticklabels() if t.get_text()]
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
    assert len(boxes) >= 3
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:], strict=False)), [t.get_text() for t in labels]


def test_a_norm_replaces_the_limits_for_a_ratio_centred_on_one():
    from matplotlib.colors import LogNorm

    ds = make_cube()
    ratio = (ds["air_temperature_2m"].isel(time=0) / 10.0).rename("ratio")
    ax = viz.plot_map(ratio, norm=LogNorm(1 / 30, 30), cmap="PuOr")
    mesh = ax.collections[0]
    assert isinstance(mesh.norm, LogNorm) and (mesh.norm.vmin, mesh.norm.vmax) == pytest.approx((1 / 30, 30))
    assert ax.child_axes[0].get_yscale() == "log"  # the colour bar reads 1/30 .. 1 .. 30
    assert mesh.norm(1.0) == pytest.approx(0.5)  # 1 sits in the middle of the diverging scale
