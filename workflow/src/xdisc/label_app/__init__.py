"""The labelling page (``xdisc label --images DIR --stacks DIR --labels CSV --labeller NAME``).

A web server on 127.0.0.1 (loopback only: it has no authentication) with one page per
(station, image): the image's amplitude channel and its significance (amplitude over the noise
channel; older files: the t-value channel), rendered here with matplotlib,
the station's depth stack with its bootstrap band and the stacking verdict from
``results/stack/{NET}.{STA}.nc`` when there is one. Keys ``p`` present, ``a`` absent,
``u`` unsure, ``s`` skip (or the buttons) save at once and move to the next unlabelled image;
with Shift (``P``, ``A``, ``U``, ``S``, or the station buttons) the label is the whole station's
(image ``*``): it labels every image of the station without a label of its own (a label of one
image overrides it), so a station is labelled once instead of image by image.
``n`` (or a click) enters the note field, Enter or Esc leaves it; left/right arrows browse.
The page opened at ``/`` is always the first image with neither a label of its own nor a
station label (stations sorted by code, then image index), so a restarted server resumes where
the last one stopped. Unreadable image files are left out with a logged reason.

Modules: :mod:`~xdisc.label_app.session` (the images to label and the label file, thread-safe),
:mod:`~xdisc.label_app.render` (the matplotlib figure of an image), :mod:`~xdisc.label_app.server`
(pages and the HTTP server); the page frame, style sheet and script are the files in ``templates/``.
Labels are written with :mod:`xdisc.labels`, the only part that training uses.
"""

import importlib

# The names below are imported from their module on first use (``label_app.serve``), so that the
# command line, which reads a few defaults of the session module, does not load numpy and matplotlib.
_EXPORTS = {
    "render": ["AMPLITUDE_LIMITS", "amplitude_limit", "image_figure", "render_png", "verdict_text"],
    "server": ["LabelServer", "done_page", "item_page", "make_server", "serve"],
    "session": ["PAGE_SOURCE", "LabelSession", "StationImages", "scan_image_file"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
