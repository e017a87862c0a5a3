"""Figures without pyplot, rendered as inline SVG for the HTML reports."""

from __future__ import annotations

import io

from matplotlib.figure import Figure


def figure(*grid, figsize, **kw):
    """A matplotlib ``Figure`` and its axes, made without pyplot: no backend is chosen and no
    global state is touched (``Figure.savefig`` renders by the file format)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kw)


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _tag(artist, name):
    artist.set_gid(f"data-{name}")


__all__ = ["figure", "_svg", "_tag"]
