"""The reproduction's figures as PNG files: metric curves over a swept setting (`line_plot`) and
metrics per group (`grouped_bars`), each with ±std error bars over seeds and dashed reference lines
(the "w/o CCL" row, the synthetic oracle's ceiling).

matplotlib is imported only when a figure is drawn, so `tfrec.reproduce` imports without it. Figures
are drawn with matplotlib's object API on the non-interactive Agg canvas, never through pyplot:
nothing is registered with pyplot's figure manager (no figure to leak or close), and the backend
of a process that already uses pyplot (a notebook) is left as it is, where `matplotlib.use("Agg")`
would switch it for the whole process.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from tfrec.reproduce.report import incomplete_path

DPI = 120
FIGSIZE = (6.4, 4.0)  # inches: 768 x 480 pixels at DPI

Series = Mapping[str, tuple[Sequence[float], Optional[Sequence[float]]]]


def _new_figure(figsize: tuple[float, float], dpi: int) -> Any:
  """A matplotlib Figure on an Agg canvas, or an ImportError that says how to install it."""
  try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
  except ImportError as e:
    raise ImportError('tfrec.reproduce draws its figures with matplotlib, which is not '
                      'installed: pip install -e ".[reproduce]"') from e
  fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")  # constrained: the size is kept
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Any, path: str | os.PathLike, dpi: int) -> str:
  """Saves `fig` as a PNG at `path` atomically: a sibling temporary file, then `os.replace`."""
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = incomplete_path(path)
  try:
    with open(tmp, "xb") as f:
      fig.savefig(f, format="png", dpi=dpi)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  finally:
    fig.clear()
  return path


def _check_series(series: Series, n: int, what: str) -> list[tuple[str, np.ndarray, Any]]:
  """(name, means, stds or None) per series, each of length `n`, or a ValueError naming it."""
  if not series:
    raise ValueError("series is empty: nothing to draw")
  out = []
  for name, (means, stds) in series.items():
    means = np.asarray(means, np.float64)
    stds = None if stds is None else np.asarray(stds, np.float64)
    for label, arr in (("means", means), ("stds", stds)):
      if arr is not None and arr.shape != (n,):
        raise ValueError(f"series {name!r}: {label} has shape {arr.shape}, expected ({n},) "
                         f"(one per {what})")
    if stds is not None and np.any(stds < 0):
      raise ValueError(f"series {name!r}: negative stds {stds.tolist()}")
    out.append((str(name), means, stds))
  return out


def _reference_lines(ax: Any, hlines: Optional[Mapping[str, float]], first_color: int) -> None:
  """Dashed horizontal lines, each in its own colour after the series' colours, in the legend."""
  for i, (name, y) in enumerate((hlines or {}).items()):
    ax.axhline(float(y), linestyle="--", linewidth=1.2, color=f"C{(first_color + i) % 10}",
               label=str(name))


def _finish(ax: Any, title: str, ylabel: str, ylim: Optional[tuple[float, float]],
            hlines: Optional[Mapping[str, float]]) -> None:
  """Title, y label and limits, grid, and a legend listing the series before the references."""
  ax.set_title(title)
  ax.set_ylabel(ylabel)
  if ylim is not None:
    ax.set_ylim(*ylim)
  ax.grid(True, alpha=0.3)
  handles, labels = ax.get_legend_handles_labels()  # plain lines (the references) come first
  references = {str(name) for name in (hlines or {})}
  order = sorted(range(len(labels)), key=lambda i: labels[i] in references)
  ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize="small")


def line_plot(path: str | os.PathLike, x: Sequence[Any], series: Series, xlabel: str, ylabel: str,
              title: str, hlines: Optional[Mapping[str, float]] = None, xscale: str = "linear",
              ylim: Optional[tuple[float, float]] = None,
              figsize: tuple[float, float] = FIGSIZE, dpi: int = DPI) -> str:
  """A metric over a swept setting: one line per series with ±std error bars, written as a PNG.

  Args:
    path: the PNG to write (atomically; parent directories are created).
    x: the setting's values; if any is a string the axis is categorical: points at 0..n-1,
      labelled with the values.
    series: {name: (means, stds)}, each of len(x); stds may be None (no error bars).
    xlabel, ylabel, title: axis labels and title.
    hlines: {name: y} reference levels drawn dashed across the plot (e.g. "w/o CCL", the oracle
      ceiling).
    xscale: "linear" or "log" (numeric x > 0 only).
    ylim: optional (bottom, top) of the y axis.
    figsize, dpi: the PNG is figsize * dpi pixels (768 x 480 by default).

  Returns:
    `path`.

  Raises:
    ValueError: x empty, a series of another length, negative stds, a log scale on categorical
      or non-positive x, or an unknown xscale.
    ImportError: matplotlib is missing.
  """
  n = len(x)
  if n == 0:
    raise ValueError("x is empty: nothing to draw")
  if xscale not in ("linear", "log"):
    raise ValueError(f"xscale must be 'linear' or 'log', got {xscale!r}")
  categorical = any(isinstance(v, str) for v in x)
  if categorical:
    if xscale != "linear":
      raise ValueError(f"xscale={xscale!r} needs numeric x, got categories {list(x)}")
    positions = np.arange(n, dtype=np.float64)
  else:
    positions = np.asarray(x, np.float64)
    if xscale == "log" and np.any(positions <= 0):
      raise ValueError(f"xscale='log' needs x > 0, got {positions.tolist()}")
  checked = _check_series(series, n, "x value")
  fig = _new_figure(figsize, dpi)
  ax = fig.add_subplot()
  for i, (name, means, stds) in enumerate(checked):
    ax.errorbar(positions, means, yerr=stds, marker="o", markersize=4, capsize=3,
                color=f"C{i % 10}", label=name)
  _reference_lines(ax, hlines, len(checked))
  if categorical:
    ax.set_xticks(positions)
    ax.set_xticklabels([str(v) for v in x])
  else:
    ax.set_xscale(xscale)
  ax.set_xlabel(xlabel)
  _finish(ax, title, ylabel, ylim, hlines)
  return _save(fig, path, dpi)


def grouped_bars(path: str | os.PathLike, groups: Sequence[str], series: Series, ylabel: str,
                 title: str, hlines: Optional[Mapping[str, float]] = None,
                 ylim: Optional[tuple[float, float]] = None,
                 figsize: tuple[float, float] = FIGSIZE, dpi: int = DPI) -> str:
  """Side-by-side bars per group (e.g. a metric per domain, one bar per model) with ±std error
  bars, written as a PNG.

  Args:
    path: the PNG to write (atomically; parent directories are created).
    groups: the group labels along the x axis.
    series: {name: (means, stds)}, each of len(groups); stds may be None.
    ylabel, title: axis label and title.
    hlines: {name: y} reference levels drawn dashed.
    ylim: optional (bottom, top): metrics such as AUC differ in the third decimal, which bars
      from 0 hide.
    figsize, dpi: the PNG is figsize * dpi pixels (768 x 480 by default).

  Returns:
    `path`.

  Raises:
    ValueError: no groups, a series of another length, or negative stds.
    ImportError: matplotlib is missing.
  """
  n = len(groups)
  if n == 0:
    raise ValueError("groups is empty: nothing to draw")
  checked = _check_series(series, n, "group")
  fig = _new_figure(figsize, dpi)
  ax = fig.add_subplot()
  positions = np.arange(n, dtype=np.float64)
  width = 0.8 / len(checked)
  for i, (name, means, stds) in enumerate(checked):
    offset = (i - (len(checked) - 1) / 2) * width
    ax.bar(positions + offset, means, width, yerr=stds, capsize=3, color=f"C{i % 10}",
           label=name)
  _reference_lines(ax, hlines, len(checked))
  ax.set_xticks(positions)
  ax.set_xticklabels([str(g) for g in groups])
  _finish(ax, title, ylabel, ylim, hlines)
  return _save(fig, path, dpi)


def interval_plot(path: str | os.PathLike, x: Sequence[Any], estimates: Sequence[float],
                  lows: Sequence[float], highs: Sequence[float], xlabel: str, ylabel: str,
                  title: str, figsize: tuple[float, float] = FIGSIZE, dpi: int = DPI) -> str:
  """A regime map: an estimate per swept value with its (asymmetric) interval, and y = 0.

  Args:
    path: the PNG to write (atomically).
    x: the swept values (strings make the axis categorical).
    estimates, lows, highs: one per value; a NaN bound draws the point without an interval.
    xlabel, ylabel, title: labels.

  Returns:
    `path`.

  Raises:
    ValueError: empty x, lengths that differ, or a bound on the wrong side of its estimate.
  """
  n = len(x)
  if n == 0:
    raise ValueError("x is empty: nothing to draw")
  est, lo, hi = (np.asarray(v, np.float64) for v in (estimates, lows, highs))
  if not est.shape == lo.shape == hi.shape == (n,):
    raise ValueError(f"estimates, lows and highs need one value per x ({n}); got "
                     f"{est.shape}, {lo.shape}, {hi.shape}")
  known = np.isfinite(lo) & np.isfinite(hi)
  if np.any(known & ((lo > est + 1e-12) | (hi < est - 1e-12))):
    raise ValueError("an interval does not contain its estimate")
  categorical = any(isinstance(v, str) for v in x)
  positions = np.arange(n, dtype=np.float64) if categorical else np.asarray(x, np.float64)
  fig = _new_figure(figsize, dpi)
  ax = fig.add_subplot()
  yerr = np.stack([np.where(known, est - lo, 0.0), np.where(known, hi - est, 0.0)])
  ax.errorbar(positions, est, yerr=yerr, marker="o", markersize=4, capsize=3, color="C0",
              label="difference, 95% CI")
  ax.axhline(0.0, linestyle="--", linewidth=1.0, color="C7", label="no difference")
  if categorical:
    ax.set_xticks(positions)
    ax.set_xticklabels([str(v) for v in x])
  ax.set_xlabel(xlabel)
  _finish(ax, title, ylabel, None, {"no difference": 0.0})
  return _save(fig, path, dpi)


def scatter_plot(path: str | os.PathLike, panels: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 title: str, figsize: tuple[float, float] = (9.6, 4.0), dpi: int = DPI) -> str:
  """Side-by-side 2-D scatter panels (e.g. COUPLE Fig. 5's leaves with and without the
  orthogonality penalty), written as a PNG.

  Args:
    path: the PNG to write (atomically; parent directories are created).
    panels: {panel title: (<[n, 2]> coordinates, <int>[n] colour groups)}.
    title: the figure's title.

  Raises:
    ValueError: no panels, or coordinates that are not [n, 2] with one group per point.
    ImportError: matplotlib is missing.
  """
  if not panels:
    raise ValueError("panels is empty: nothing to draw")
  for name, (xy, groups) in panels.items():
    xy = np.asarray(xy)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(np.asarray(groups)) != len(xy):
      raise ValueError(f"panel {name!r}: coordinates must be [n, 2] with one group per point; "
                       f"got {xy.shape} and {np.shape(groups)}")
  fig = _new_figure(figsize, dpi)
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  for ax, (name, (xy, groups)) in zip(axes, panels.items()):
    xy = np.asarray(xy)
    ax.scatter(xy[:, 0], xy[:, 1], c=np.asarray(groups) % 20, cmap="tab20", s=6)
    ax.set_title(name, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(title)
  return _save(fig, path, dpi)
