"""One colour and marker per method, the same in every figure of a report.

Built once per report from the run's methods in their results.csv order, and passed to every
figure, so that softmax is the same blue dot in the scores, ROC, CMC, statistics, cost and tuning
figures. Colours are matplotlib's tab20 (its ten strong shades first, then their light partners)
and markers a list of nine: a method's pair (colour, marker) differs from every other method's up
to 180 methods. Line styles still tell families apart (solid: classification, dashed: metric learning).
"""
from __future__ import annotations

from collections.abc import Iterable

from matplotlib import colormaps

_TAB20 = colormaps["tab20"].colors
COLOURS = [_TAB20[i] for i in range(0, 20, 2)] + [_TAB20[i] for i in range(1, 20, 2)]
MARKERS = "osD^vP*<>"
LINES = {"classification": "-", "pair": "--", "proxy": "-.", "baseline": ":"}  # line style per family

Style = tuple[tuple[float, float, float], str]  # (colour, marker)


class Styles(dict):
    """name -> (colour, marker): the next free pair for a name first asked for (a method that only
    history.csv or the tuning trials hold), kept from then on, so every figure still agrees."""

    def __missing__(self, name: str) -> Style:
        i = len(self)
        self[name] = (COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)])
        return self[name]


def method_styles(names: Iterable[str]) -> Styles:
    """(colour, marker) for each distinct name, in order of first appearance."""
    styles = Styles()
    for name in names:
        styles[name]  # noqa: B018 - the first look-up assigns the next pair
    return styles
