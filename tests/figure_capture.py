"""Test helper: the matplotlib Figures that plotting code saves, so that a test can read what was drawn
(line data, image arrays, bar heights, texts) rather than only check that a file exists.

``Figure.savefig`` is wrapped, not replaced: the real savefig still runs and writes the real file."""

from __future__ import annotations

from contextlib import contextmanager
from unittest import mock

from matplotlib.figure import Figure


@contextmanager
def saved_figures():
    """Within the block, every Figure that calls ``savefig`` is appended to the yielded list."""
    real = Figure.savefig
    figures: list[Figure] = []

    def record(self, *args, **kwargs):
        figures.append(self)
        return real(self, *args, **kwargs)

    with mock.patch.object(Figure, "savefig", record):
        yield figures


def draw(plot, *args, **kwargs) -> tuple[object, Figure]:
    """Call ``plot(*args, **kwargs)``; return its result and the one Figure it saved."""
    with saved_figures() as figures:
        result = plot(*args, **kwargs)
    assert len(figures) == 1, f"{getattr(plot, '__name__', plot)} saved {len(figures)} figures"
    return result, figures[0]


def line(ax, label: str):
    """The Line2D of ``ax`` with legend label ``label`` (exactly one)."""
    found = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, (label, [ln.get_label() for ln in ax.get_lines()])
    return found[0]


def texts(container) -> list[str]:
    """Texts drawn in an Axes or a Figure (not tick labels)."""
    return [t.get_text() for t in container.texts]
