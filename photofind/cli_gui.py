"""``photofind gui``: the desktop app (also what ``photofind`` alone starts)."""

from __future__ import annotations

import argparse
import dataclasses

from photofind.cli import Context, arguments, command
from photofind.errors import PhotofindError


def _gui_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-index", action="store_true", help="do not start indexing at launch")


def _saved_provider(library) -> str:
    """The provider chosen in the app's settings (``--provider`` other than auto wins)."""
    from photofind import settings

    return settings.load(library)["gui.provider"]


@command("gui", "open the desktop app")
@arguments(_gui_args)
def _gui(args: argparse.Namespace, ctx: Context) -> int:
    from photofind.gui.app import run

    if ctx.provider == "auto":
        ctx = dataclasses.replace(ctx, provider=_saved_provider(ctx.library))
    try:
        # An indexed library opens with its own model, not with the first-run model offer.
        model = ctx.load_library_model()
    except PhotofindError:
        if ctx.model:
            raise  # a model was named and is broken: say so
        model = None  # first run: the window offers to get one
    return run(ctx.library, model, provider=ctx.provider, start_indexing=not args.no_index)
