"""Looking at cubes: map and time-series plots, an ipywidgets explorer and a Lexcube 3-D view.

- :func:`plot_map` and :func:`plot_timeseries` draw one variable with matplotlib, with titles, axis
  labels and units taken from the cube's metadata (``long_name``, ``units``).
- :class:`CubeExplorer` (:func:`explore`) is a small ipywidgets app: a variable dropdown, a time
  slider, the map of that time step and the time series of one pixel. Click a pixel on the map (with
  ``ipympl`` installed, part of the ``viz`` extra) or type its latitude and longitude to see its time
  series. It needs neither Lexcube nor a browser to be built, so it is tested offline.
- :func:`lexcube_view` opens a variable in Lexcube's interactive 3-D cube. Lexcube is GPL-3.0 and only
  an optional dependency (``pip install 'esdl-platform[viz]'``); without it you get a clear message
  and the explorer still works.

All of these need the ``viz`` extra (matplotlib, ipywidgets); importing this module does not.

>>> import numpy as np, pandas as pd, xarray as xr
>>> da = xr.DataArray(np.random.default_rng(0).normal(size=(4, 3, 5)).astype("float32"),
...     dims=("time", "lat", "lon"), name="t2m",
...     coords={"time": pd.date_range("2003-07-04", periods=4, freq="8D"),
...             "lat": [40.5, 41.5, 42.5], "lon": [0.5, 1.5, 2.5, 3.5, 4.5]},
...     attrs={"long_name": "Air temperature at 2 m", "units": "degC"})
>>> ax = plot_map(da, time="2003-07-12")
>>> ax.get_title()
'Air temperature at 2 m, 2003-07-12'
>>> plot_timeseries(da, lat=41.5, lon=2.5).get_ylabel()
'Air temperature at 2 m [degC]'
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from platform_lib.errors import EsdlError, allowed, did_you_mean, import_extra

CUBE_DIMS = ("time", "lat", "lon")
#: colour maps by the kind of variable (first match of a name fragment); the default is viridis
CMAPS = (
    ("temperature", "RdYlBu_r"),
    ("precipitation", "YlGnBu"),
    ("moisture", "BrBG"),
    ("evaporative_stress", "BrBG"),
    ("ndvi", "YlGn"),
    ("primary_productivity", "YlGn"),
    ("heat", "inferno"),
    ("radiation", "magma"),
)
#: at most this many time steps are read to choose robust colour limits
SAMPLE_STEPS = 24

__all__ = [
    "CubeExplorer",
    "colour_limits",
    "default_cmap",
    "draw_coastlines",
    "explore",
    "lexcube_view",
    "plot_map",
    "plot_timeseries",
    "variable_label",
]


# ------------------------------------------------------------------------------------------ helpers
def _pyplot() -> Any:
    import_extra("matplotlib", "viz", "plotting")
    import matplotlib.pyplot as plt

    return plt


def _as_dataarray(data: xr.DataArray | xr.Dataset, variable: str | None, what: str) -> xr.DataArray:
    if isinstance(data, xr.DataArray):
        return data
    if not isinstance(data, xr.Dataset):
        raise EsdlError(f"{what} takes an xarray.DataArray or Dataset, not {type(data).__name__}.")
    names = list(data.data_vars)
    if variable is None:
        if len(names) == 1:
            return data[names[0]]
        raise EsdlError(f"{what}: the dataset has several variables; pass variable= one of {allowed(names)}.")
    if variable not in data.data_vars:
        raise EsdlError(
            f"{what}: no variable {variable!r}.{did_you_mean(variable, names)} Available: {allowed(names)}."
        )
    return data[variable]


def variable_label(da: xr.DataArray, with_units: bool = True) -> str:
    """``"long_name [units]"`` of a variable (its name when it has no ``long_name``).

    >>> variable_label(xr.DataArray([1.0], name="gpp", attrs={"units": "g C m-2 d-1"}))
    'gpp [g C m-2 d-1]'
    """
    name = str(da.attrs.get("long_name") or da.name or "value")
    units = da.attrs.get("units")
    return f"{name} [{units}]" if with_units and units not in (None, "") else name


def default_cmap(name: str | None) -> str:
    """A colour map that suits the variable (temperatures diverge, vegetation greens, ...).

    >>> default_cmap("air_temperature_2m"), default_cmap("kndvi"), default_cmap("foo")
    ('RdYlBu_r', 'YlGn', 'viridis')
    """
    for fragment, cmap in CMAPS:
        if name and fragment in name:
            return cmap
    return "viridis"


def colour_limits(da: xr.DataArray, robust: bool = True) -> tuple[float, float]:
    """Colour limits for a variable: the 2nd and 98th percentiles (``robust``) or min and max, from at
    most ``SAMPLE_STEPS`` evenly spaced time steps (so a long cube is not read whole).

    >>> colour_limits(xr.DataArray(np.arange(101.0)), robust=True)
    (2.0, 98.0)
    """
    if "time" in da.dims and da.sizes["time"] > SAMPLE_STEPS:
        idx = np.linspace(0, da.sizes["time"] - 1, SAMPLE_STEPS).round().astype(int)
        da = da.isel(time=np.unique(idx))
    values = np.asarray(da.values, dtype="float64")
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [2, 98]) if robust else (values.min(), values.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return float(lo), float(hi)


def _select_time(da: xr.DataArray, time: int | str | pd.Timestamp | None) -> tuple[xr.DataArray, str]:
    """One time step (an index or a date, nearest) or, for ``None``, the time mean; and its label."""
    if "time" not in da.dims:
        return da, ""
    times = pd.DatetimeIndex(da["time"].values)
    if time is None:
        if len(times) == 1:
            return da.isel(time=0), str(times[0].date())
        return da.mean("time", keep_attrs=True), f"mean {times[0].date()}..{times[-1].date()}"
    if isinstance(time, int | np.integer):
        if not -len(times) <= time < len(times):
            raise EsdlError(f"time index {time} is outside 0..{len(times) - 1}.")
        return da.isel(time=int(time)), str(times[int(time)].date())
    try:
        stamp = pd.Timestamp(time)
    except (TypeError, ValueError):
        raise EsdlError(f"time {time!r} is neither an index nor a date like '2003-08-08'.") from None
    i = int(np.abs((times - stamp).total_seconds()).argmin())
    return da.isel(time=i), str(times[i].date())


def _plot_lons(lon: np.ndarray) -> np.ndarray:
    """Longitudes made increasing for plotting (a region across the dateline continues past 180)."""
    lon = np.asarray(lon, dtype=float)
    return np.where(lon < lon[0], lon + 360.0, lon) if lon.size > 1 and np.any(np.diff(lon) < 0) else lon


def _nearest_index(values: np.ndarray, x: float, circular: bool = False) -> int:
    d = np.abs(np.asarray(values, dtype=float) - x)
    if circular:
        d = np.minimum(d, 360.0 - d)
    return int(np.nanargmin(d))


def _is_land(lat: float, lon: float) -> bool:
    """Is ``(lat, lon)`` on land in the GLOBE 1-km mask shipped by ``global-land-mask``?"""
    from global_land_mask import globe

    return bool(globe.is_land(np.clip(lat, -89.999, 89.999), ((lon + 180.0) % 360.0) - 180.0))


def _fmt_latlon(lat: float, lon: float) -> str:
    return f"{abs(lat):.2f}°{'N' if lat >= 0 else 'S'}, {abs(lon):.2f}°{'E' if lon >= 0 else 'W'}"


def _check_spatial(da: xr.DataArray, what: str) -> None:
    missing = [d for d in ("lat", "lon") if d not in da.dims]
    if missing:
        raise EsdlError(f"{what} needs dims 'lat' and 'lon'; {da.name!r} has {da.dims} (missing {missing}).")


# ------------------------------------------------------------------------------------------- plots
def plot_map(
    data: xr.DataArray | xr.Dataset,
    variable: str | None = None,
    time: int | str | pd.Timestamp | None = None,
    *,
    ax: Any = None,
    cmap: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    robust: bool = True,
    colorbar: bool = True,
    coastlines: bool = True,
    norm: Any = None,
) -> Any:
    """Map of one variable at one time step (an index or a date, nearest) or, with ``time=None``, its
    time mean; title, colour-bar label and units from the metadata. Returns the matplotlib ``Axes``.

    The map keeps degrees square (longitude and latitude at the same scale), the colour bar is exactly
    as tall as the map, long titles and labels wrap within the figure, and ``coastlines`` are drawn
    from the GLOBE 1-km land mask that ``global-land-mask`` ships (:func:`draw_coastlines`; no network).
    ``norm`` (a matplotlib ``Normalize``, e.g. ``LogNorm(1 / 30, 30)`` for a ratio centred on 1) replaces
    ``vmin``/``vmax``.

    >>> import numpy as np
    >>> da = xr.DataArray(np.ones((2, 3)), dims=("lat", "lon"), name="kndvi",
    ...                   coords={"lat": [1.0, 2.0], "lon": [1.0, 2.0, 3.0]}, attrs={"units": "1"})
    >>> ax = plot_map(da)
    >>> ax.get_title(), ax.child_axes[0].get_ylabel()  # the colour bar: an inset of the map
    ('kndvi', 'kndvi [1]')
    """
    da = _as_dataarray(data, variable, "plot_map")
    _check_spatial(da, "plot_map")
    field, when = _select_time(da, time)
    extra = [d for d in field.dims if d not in ("lat", "lon")]
    if extra:
        raise EsdlError(
            f"plot_map draws (lat, lon); select the other dims {extra} first (e.g. .isel({extra[0]}=0))."
        )
    field = field.transpose("lat", "lon")
    if ax is None:
        _, ax = _pyplot().subplots(figsize=(7, 3.8), layout="constrained")
    if norm is None and (vmin is None or vmax is None):
        lo, hi = colour_limits(field, robust=robust)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    limits = {"norm": norm} if norm is not None else {"vmin": vmin, "vmax": vmax}
    mesh = ax.pcolormesh(
        _plot_lons(field["lon"].values),
        field["lat"].values,
        np.asarray(field.values, dtype="float32"),
        cmap=cmap or default_cmap(str(da.name)),
        shading="nearest",
        **limits,
    )
    title = variable_label(da, with_units=False) + (f", {when}" if when else "")
    width_in = ax.figure.get_figwidth() * ax.get_position().width
    ax.set_title(_wrap(title, width_in, 12), fontsize="medium")
    ax.set_xlabel("longitude [degrees east]")
    ax.set_ylabel("latitude [degrees north]")
    ax.set_aspect("equal", adjustable="box")
    lon, lat = _plot_lons(field["lon"].values), field["lat"].values
    half_lon = abs(lon[1] - lon[0]) / 2 if lon.size > 1 else 0.5
    half_lat = abs(lat[1] - lat[0]) / 2 if lat.size > 1 else 0.5
    lon_range = (lon.min() - half_lon, lon.max() + half_lon)
    lat_range = (lat.min() - half_lat, lat.max() + half_lat)
    if coastlines:
        draw_coastlines(ax, lon_range, lat_range)
    if colorbar:
        # an inset in the map's own axes coordinates follows the map's box after its aspect is applied:
        # the bar is as tall as the map (a bar beside the layout slot is as tall as the slot, not the map).
        # Degrees are square, so the map is (lon span / lat span) times as wide as tall: the bar's width
        # and gap, 5% and 3% of the map's height, are these fractions of its width
        tall = (lat_range[1] - lat_range[0]) / (lon_range[1] - lon_range[0])
        cax = ax.inset_axes([1.0 + 0.03 * tall, 0.0, 0.05 * tall, 1.0])
        height_in = ax.figure.get_figheight() * ax.get_position().height
        ax.figure.colorbar(mesh, cax=cax, label=_wrap(variable_label(da), height_in, 10))
    return ax


def _wrap(text: str, inches: float, points: float) -> str:
    """``text`` wrapped to lines that fit ``inches`` at about ``points`` pt (a character is ~0.55 em)."""
    import textwrap

    width = max(12, int(inches * 72 / (0.55 * points)))
    return "\n".join(textwrap.wrap(text, width)) or text


#: coastline sampling: points along the map's longer side (at least the mask's ~1 km, 0.0083 degrees)
COAST_SAMPLES = 720


def draw_coastlines(
    ax: Any,
    lon_range: tuple[float, float],
    lat_range: tuple[float, float],
    *,
    color: str = "0.15",
    linewidth: float = 0.6,
) -> Any:
    """Draw coastlines over ``lon_range`` x ``lat_range`` (the plot's longitudes, which may run past 180
    for a region across the dateline) on ``ax``: the 0.5 contour of the GLOBE 1-km land mask shipped by
    ``global-land-mask``, sampled at :data:`COAST_SAMPLES` points along the longer side. The axes' limits
    are kept. Returns the contour set.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> _, ax = plt.subplots()
    >>> lines = draw_coastlines(ax, (-10.0, 5.0), (35.0, 45.0))  # Iberia
    >>> bool(len(lines.allsegs[0]) > 0)
    True
    """
    from global_land_mask import globe

    lon0, lon1 = float(lon_range[0]), float(lon_range[1])
    lat0, lat1 = max(float(lat_range[0]), -90.0), min(float(lat_range[1]), 90.0)
    step = max(max(lon1 - lon0, lat1 - lat0) / COAST_SAMPLES, 1.0 / 120.0)
    lons = np.arange(lon0, lon1 + step / 2, step)
    lats = np.clip(np.arange(lat0, lat1 + step / 2, step), -89.999, 89.999)
    wrapped = (lons + 180.0) % 360.0 - 180.0
    land = globe.is_land(*np.meshgrid(lats, wrapped, indexing="ij")).astype("float32")
    limits = ax.get_xlim(), ax.get_ylim()
    lines = ax.contour(lons, lats, land, levels=[0.5], colors=color, linewidths=linewidth)
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    return lines


def plot_timeseries(
    data: xr.DataArray | xr.Dataset,
    variable: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    *,
    ax: Any = None,
    label: str | None = None,
    **line_kwargs: Any,
) -> Any:
    """Time series of one variable at the grid cell nearest ``(lat, lon)`` or, without them, its
    area-weighted mean (cos latitude, NaN-aware) over the cube. Returns the matplotlib ``Axes``.

    >>> import numpy as np, pandas as pd
    >>> da = xr.DataArray(np.arange(6.0).reshape(3, 1, 2), dims=("time", "lat", "lon"), name="x",
    ...     coords={"time": pd.date_range("2001-01-05", periods=3, freq="8D"), "lat": [0.0], "lon": [0.0, 1.0]})
    >>> plot_timeseries(da).lines[0].get_ydata().tolist()
    [0.5, 2.5, 4.5]
    """
    da = _as_dataarray(data, variable, "plot_timeseries")
    if "time" not in da.dims:
        raise EsdlError(f"plot_timeseries needs a 'time' dim; {da.name!r} has {da.dims}.")
    _check_spatial(da, "plot_timeseries")
    if (lat is None) != (lon is None):
        raise EsdlError("plot_timeseries: give both lat and lon (a pixel) or neither (the area mean).")
    if lat is not None:
        i = _nearest_index(da["lat"].values, float(lat))
        j = _nearest_index(da["lon"].values, float(lon), circular=True)
        series = da.isel(lat=i, lon=j)
        where = _fmt_latlon(float(da["lat"].values[i]), float(da["lon"].values[j]))
    else:
        weights = np.cos(np.deg2rad(da["lat"])).fillna(0)
        series = da.weighted(weights).mean(("lat", "lon"), keep_attrs=True)
        where = "area mean"
    values = np.asarray(series.values, dtype="float64")
    if ax is None:
        _, ax = _pyplot().subplots(figsize=(7, 3), layout="constrained")
    ax.plot(pd.DatetimeIndex(series["time"].values), values, label=label or where, **line_kwargs)
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(maxticks=max(3, int(ax.figure.get_figwidth())))  # labels do not collide
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_title(f"{variable_label(da, with_units=False)}, {where}")
    ax.set_ylabel(variable_label(da))
    ax.set_xlabel("time")
    ax.grid(True, alpha=0.3)
    return ax


# -------------------------------------------------------------------------------------- the explorer
def _ipympl_available() -> bool:
    try:
        import ipympl  # noqa: F401
    except ImportError:
        return False
    return True


class CubeExplorer:
    """An ipywidgets explorer of a cube: variable dropdown, time slider, map, pixel time series.

    Click the map (interactive with ``ipympl``) or type a latitude and longitude to pick the pixel
    whose time series is shown. Display it by making it the last expression of a cell (or
    ``display(explorer)``); ``explorer.widget`` is the ipywidgets ``VBox``.

    ``interactive=None`` uses ipympl canvases when ipympl is installed, else PNG images (rendered
    with matplotlib's Agg backend) with the latitude/longitude boxes to choose a pixel.

    >>> import numpy as np, pandas as pd
    >>> ds = xr.Dataset({"t": (("time", "lat", "lon"), np.zeros((3, 2, 2), "float32"))},
    ...     coords={"time": pd.date_range("2001-01-05", periods=3, freq="8D"),
    ...             "lat": [0.5, 1.5], "lon": [0.5, 1.5]})
    >>> ex = CubeExplorer(ds, interactive=False)
    >>> ex.select_pixel(1.4, 0.6)
    (1.5, 0.5)
    """

    def __init__(
        self,
        cube: xr.Dataset | xr.DataArray,
        variable: str | None = None,
        *,
        time: int | str | None = 0,
        pixel: tuple[float, float] | None = None,
        interactive: bool | None = None,
        figsize: tuple[float, float] = (5.5, 3.4),
    ) -> None:
        self._widgets = import_extra("ipywidgets", "viz", "the cube explorer")
        import_extra("matplotlib", "viz", "the cube explorer")
        from matplotlib.figure import Figure

        if isinstance(cube, xr.DataArray):
            cube = cube.to_dataset(name=str(cube.name or "value"))
        self.cube = cube
        self.variables = [v for v in cube.data_vars if set(CUBE_DIMS) <= set(cube[v].dims)]
        if not self.variables:
            raise EsdlError(f"the explorer needs variables with dims {CUBE_DIMS}; this cube has none.")
        if variable is None:
            variable = self.variables[0]
        elif variable not in self.variables:
            raise EsdlError(
                f"no (time, lat, lon) variable {variable!r}.{did_you_mean(variable, self.variables)}"
                f" Available: {allowed(self.variables)}."
            )
        self.variable = variable
        self.times = pd.DatetimeIndex(cube["time"].values)
        self.interactive = _ipympl_available() if interactive is None else bool(interactive)
        self.map_figure = Figure(figsize=figsize, layout="constrained")
        self.series_figure = Figure(figsize=figsize, layout="constrained")
        self._map_view = self._make_view(self.map_figure)
        self._series_view = self._make_view(self.series_figure)
        self.map_figure.canvas.mpl_connect("button_press_event", self._on_click)

        w = self._widgets
        self.variable_dropdown = w.Dropdown(options=self.variables, value=variable, description="variable")
        self.time_slider = w.SelectionSlider(
            options=[(str(t.date()), i) for i, t in enumerate(self.times)],
            value=0,
            description="time",
            continuous_update=False,
            layout=w.Layout(width="480px"),
        )
        self.lat_box = w.FloatText(description="lat", step=0.25, layout=w.Layout(width="160px"))
        self.lon_box = w.FloatText(description="lon", step=0.25, layout=w.Layout(width="160px"))
        self.status = w.HTML()
        self.widget = w.VBox(
            [
                w.HBox([self.variable_dropdown, self.time_slider]),
                w.HBox([self._map_view, self._series_view]),
                w.HBox([self.lat_box, self.lon_box, self.status]),
            ]
        )
        self._syncing = False
        self.time_index = self._time_index(time)
        self.time_slider.value = self.time_index
        self.lat, self.lon = self._snap(*(pixel if pixel is not None else self._default_pixel()))
        self._set_boxes()
        self._draw_map()
        self._draw_series()
        self.variable_dropdown.observe(lambda ch: self.set_variable(ch["new"]), names="value")
        self.time_slider.observe(lambda ch: self.set_time(ch["new"]), names="value")
        self.lat_box.observe(self._on_box, names="value")
        self.lon_box.observe(self._on_box, names="value")

    # -- display
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _make_view(self, fig: Any) -> Any:
        if self.interactive:
            from ipympl.backend_nbagg import Canvas, FigureManager

            canvas = Canvas(fig)
            FigureManager(canvas, 0)
            canvas.header_visible = False
            canvas.toolbar_position = "left"
            return canvas
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
        return self._widgets.Image(format="png")

    def _refresh(self, fig: Any, view: Any) -> None:
        if self.interactive:
            fig.canvas.draw_idle()
        else:
            import io

            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=80)
            view.value = buf.getvalue()

    # -- state
    @property
    def data(self) -> xr.DataArray:
        """The selected variable as (time, lat, lon)."""
        return self.cube[self.variable].transpose(*CUBE_DIMS)

    def _time_index(self, time: int | str | None) -> int:
        if time is None:
            return 0
        if isinstance(time, int | np.integer):
            if not 0 <= time < len(self.times):
                raise EsdlError(f"time index {time} is outside 0..{len(self.times) - 1}.")
            return int(time)
        return int(np.abs((self.times - pd.Timestamp(time)).total_seconds()).argmin())

    def _snap(self, lat: float, lon: float) -> tuple[float, float]:
        lats, lons = self.cube["lat"].values, self.cube["lon"].values
        lon = ((float(lon) + 180.0) % 360.0) - 180.0
        return float(lats[_nearest_index(lats, float(lat))]), float(lons[_nearest_index(lons, lon, True)])

    def _default_pixel(self) -> tuple[float, float]:
        """The cell with data closest to the centre of the map at the first time step."""
        field = np.asarray(self.data.isel(time=self.time_index).values)
        lats, lons = self.cube["lat"].values, _plot_lons(self.cube["lon"].values)
        ii, jj = np.nonzero(np.isfinite(field))
        if ii.size == 0:
            return float(lats[len(lats) // 2]), float(self.cube["lon"].values[len(lons) // 2])
        d = (lats[ii] - lats.mean()) ** 2 + (lons[jj] - lons.mean()) ** 2
        k = int(d.argmin())
        return float(lats[ii[k]]), float(self.cube["lon"].values[jj[k]])

    def _set_boxes(self) -> None:
        self._syncing = True
        try:
            self.lat_box.value, self.lon_box.value = self.lat, self.lon
        finally:
            self._syncing = False

    # -- actions (also called by the widgets)
    def set_variable(self, variable: str) -> None:
        """Show another variable (also the dropdown's action)."""
        if variable not in self.variables:
            raise EsdlError(
                f"no (time, lat, lon) variable {variable!r}; available: {allowed(self.variables)}."
            )
        self.variable = variable
        if self.variable_dropdown.value != variable:
            self.variable_dropdown.value = variable
        self._draw_map()
        self._draw_series()

    def set_time(self, index: int) -> None:
        """Show time step ``index`` (also the slider's action)."""
        self.time_index = self._time_index(index)
        if self.time_slider.value != self.time_index:
            self.time_slider.value = self.time_index
        self._draw_map()
        self._mark_time()

    def select_pixel(self, lat: float, lon: float) -> tuple[float, float]:
        """Show the time series of the cell nearest ``(lat, lon)`` that has data; returns the cell centre.

        A point over the ocean (or any cell without data) moves to the nearest cell with data, and the
        status line says so: "no data over ocean at ... (nearest land with data: ...)".
        """
        lat_c, lon_c = self._snap(lat, lon)
        note = ""
        if not self._has_data(lat_c, lon_c):
            found = self._nearest_with_data(lat_c, lon_c)
            where = "over ocean" if not _is_land(lat_c, lon_c) else "in this cell"
            if found is None:
                note = f"no data {where} at {_fmt_latlon(lat_c, lon_c)}, nor anywhere in {self.variable!r}"
            else:
                note = f"no data {where} at {_fmt_latlon(lat_c, lon_c)} (nearest {'land ' if where == 'over ocean' else ''}with data: {_fmt_latlon(*found)})"
                lat_c, lon_c = found
        elif abs(lat_c - float(lat)) > 1e-9 or abs(lon_c - (((float(lon) + 180.0) % 360.0) - 180.0)) > 1e-9:
            note = f"snapped to the cell centre {_fmt_latlon(lat_c, lon_c)}"
        self.lat, self.lon = lat_c, lon_c
        self._note = note
        self._set_boxes()
        self._mark_pixel()
        self._draw_series()
        return self.lat, self.lon

    def _data_mask(self) -> np.ndarray:
        """(lat, lon): cells of the selected variable with data at the shown step or at any of up to
        :data:`SAMPLE_STEPS` steps spread over the cube (a cloud gap now is not "no data")."""
        key = (self.variable, self.time_index)
        if getattr(self, "_mask_key", None) != key:
            steps = np.unique(
                np.r_[
                    np.linspace(0, len(self.times) - 1, min(SAMPLE_STEPS, len(self.times))).astype(int),
                    self.time_index,
                ]
            )
            values = np.asarray(self.data.isel(time=steps).values)
            self._mask, self._mask_key = np.isfinite(values).any(axis=0), key
        return self._mask

    def _has_data(self, lat: float, lon: float) -> bool:
        lats, lons = self.cube["lat"].values, self.cube["lon"].values
        return bool(self._data_mask()[_nearest_index(lats, lat), _nearest_index(lons, lon, True)])

    def _nearest_with_data(self, lat: float, lon: float) -> tuple[float, float] | None:
        """The centre of the cell with data nearest ``(lat, lon)`` on the sphere (None if there is none)."""
        ii, jj = np.nonzero(self._data_mask())
        if ii.size == 0:
            return None
        lats, lons = np.deg2rad(self.cube["lat"].values[ii]), np.deg2rad(self.cube["lon"].values[jj])
        la, lo = np.deg2rad(lat), np.deg2rad(lon)
        cos_angle = np.sin(la) * np.sin(lats) + np.cos(la) * np.cos(lats) * np.cos(lons - lo)
        k = int(np.argmax(cos_angle))
        return float(self.cube["lat"].values[ii[k]]), float(self.cube["lon"].values[jj[k]])

    def _on_click(self, event: Any) -> None:
        if event.inaxes is not getattr(self, "map_ax", None) or event.xdata is None:
            return
        self.select_pixel(float(event.ydata), float(event.xdata))

    def _on_box(self, _change: Any) -> None:
        if not self._syncing:
            self.select_pixel(self.lat_box.value, self.lon_box.value)

    # -- drawing
    def _draw_map(self) -> None:
        fig = self.map_figure
        fig.clear()
        self.map_ax = fig.add_subplot()
        da = self.data
        vmin, vmax = colour_limits(da)
        plot_map(da, time=self.time_index, ax=self.map_ax, vmin=vmin, vmax=vmax)
        self._pixel_marker = None
        self._mark_pixel(redraw=False)
        self._refresh(fig, self._map_view)

    def _mark_pixel(self, redraw: bool = True) -> None:
        if self._pixel_marker is not None:
            self._pixel_marker.remove()
        x = _plot_lons(np.append(self.cube["lon"].values, self.lon))[-1]
        (self._pixel_marker,) = self.map_ax.plot(
            [x], [self.lat], marker="o", mfc="none", mec="k", ms=9, mew=2
        )
        if redraw:
            self._refresh(self.map_figure, self._map_view)

    def _draw_series(self) -> None:
        fig = self.series_figure
        fig.clear()
        self.series_ax = fig.add_subplot()
        plot_timeseries(self.data, lat=self.lat, lon=self.lon, ax=self.series_ax, color="C0", lw=1.2)
        self._time_line = None
        self._mark_time(redraw=False)
        values = self.series_ax.lines[0].get_ydata()
        n_valid = int(np.isfinite(values).sum())
        note = getattr(self, "_note", "")
        self.status.value = (
            f"pixel {_fmt_latlon(self.lat, self.lon)}: {n_valid} of {len(values)} steps with data"
            + (f"; {note}" if note else "")
        )
        self._refresh(fig, self._series_view)

    def _mark_time(self, redraw: bool = True) -> None:
        if getattr(self, "_time_line", None) is not None:
            self._time_line.remove()
        self._time_line = self.series_ax.axvline(self.times[self.time_index], color="k", lw=0.8, ls="--")
        if redraw:
            self._refresh(self.series_figure, self._series_view)


def explore(cube: xr.Dataset | xr.DataArray, variable: str | None = None, **kwargs: Any) -> CubeExplorer:
    """Build a :class:`CubeExplorer` for ``cube`` (display it as a cell's last expression).

    >>> import numpy as np, pandas as pd
    >>> da = xr.DataArray(np.ones((2, 2, 2), "float32"), dims=("time", "lat", "lon"), name="v",
    ...     coords={"time": pd.date_range("2001-01-05", periods=2, freq="8D"), "lat": [0.0, 1.0], "lon": [0.0, 1.0]})
    >>> explore(da, interactive=False).variable
    'v'
    """
    return CubeExplorer(cube, variable, **kwargs)


# ---------------------------------------------------------------------------------------- lexcube
def lexcube_view(
    data: xr.DataArray | xr.Dataset,
    variable: str | None = None,
    *,
    cmap: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    **kwargs: Any,
) -> Any:
    """A Lexcube 3-D cube widget of one (time, lat, lon) variable.

    Lexcube (GPL-3.0) is an optional dependency of the ``viz`` extra; without it this raises
    :class:`~platform_lib.errors.MissingExtraError` saying how to install it. Colour limits default
    to robust percentiles and the colour map to one that suits the variable. Extra keyword arguments
    go to ``lexcube.Cube3DWidget``. The data stay lazy: Lexcube reads the tiles it shows.

    >>> time = pd.date_range("2001-01-05", periods=2, freq="8D")
    >>> kndvi = xr.DataArray(np.arange(8.0, dtype="float32").reshape(2, 2, 2), dims=CUBE_DIMS, name="kndvi",
    ...     coords={"time": time, "lat": [1.0, 0.0], "lon": [0.0, 1.0]})
    >>> w = lexcube_view(kndvi.chunk())  # robust colour limits (percentiles), kNDVI's colour map
    >>> type(w).__name__, round(w.vmin, 2), round(w.vmax, 2), w.cmap
    ('Cube3DWidget', 0.14, 6.86, 'YlGn')
    """
    lexcube = import_extra("lexcube", "viz", "the Lexcube 3-D view (GPL-3.0, an optional extra)")
    da = _as_dataarray(data, variable, "lexcube_view")
    if set(da.dims) != set(CUBE_DIMS):
        raise EsdlError(
            f"lexcube_view needs a 3-D (time, lat, lon) variable; {da.name!r} has dims {da.dims}."
        )
    da = da.transpose(*CUBE_DIMS)
    if vmin is None or vmax is None:
        lo, hi = colour_limits(da)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    return lexcube.Cube3DWidget(da, cmap=cmap or default_cmap(str(da.name)), vmin=vmin, vmax=vmax, **kwargs)
