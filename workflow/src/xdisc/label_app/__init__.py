"""The labelling page (``xdisc label --images DIR --stacks DIR --labels CSV --labeller NAME``).

A web server on 127.0.0.1 (loopback only: it has no authentication) with one page per
(station, image): the image's amplitude channel and its significance (amplitude over the noise
channel; older files: the t-value channel), rendered here with matplotlib,
the station's depth stack with its bootstrap band and the stacking verdict from
``results/stack/{NET}.{STA}.nc`` when there is one. Keys ``p`` present, ``a`` absent,
``u`` unsure, ``s`` skip (or the buttons) save at once and move to the next unlabelled image;
``n`` (or a click) enters the note field, Enter or Esc leaves it; left/right arrows browse.
The page opened at ``/`` is always the first image without a label of its own (stations
sorted by code, then image index), so a restarted server resumes where the last one stopped.
Station-wide (``*``) rows in the label file are shown as context but do not count as a label
of the image. Unreadable image files are left out with a logged reason.

Modules: :mod:`~xdisc.label_app.session` (the images to label and the label file, thread-safe),
:mod:`~xdisc.label_app.render` (the matplotlib figure of an image), :mod:`~xdisc.label_app.server`
(pages and the HTTP server); the page frame, style sheet and script are the files in ``templates/``.
Labels are written with :mod:`xdisc.labels`, the only part that training uses.
"""

from xdisc.label_app.render import AMPLITUDE_LIMITS, amplitude_limit, image_figure, render_png, verdict_text
from xdisc.label_app.server import LabelServer, done_page, item_page, make_server, serve
from xdisc.label_app.session import PAGE_SOURCE, LabelSession, StationImages, scan_image_file

__all__ = ["AMPLITUDE_LIMITS", "PAGE_SOURCE", "LabelServer", "LabelSession", "StationImages", "amplitude_limit",
           "done_page", "image_figure", "item_page", "make_server", "render_png", "scan_image_file", "serve",
           "verdict_text"]
