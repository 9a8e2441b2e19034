"""What every command of the command line shares: the :class:`Context` of the global
options, the :class:`Command` record a command module lists, and the helpers more than one
command group uses (opening the library, JSON output, progress bars).

Command modules import this module only, never :mod:`photofind.cli`, which imports them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from photofind.errors import PhotofindError
from photofind.library.model_id import ModelId

#: what works while another process writes the library (they open it read-only)
READ_ONLY_COMMANDS = "`photofind status`, `list`, `search`, `similar` and `folders list`"


@dataclass
class Context:
    library: Path
    model: str | None
    provider: str
    verbose: int

    def load_model(self):
        from photofind.clip import load_model
        from photofind.models.store import active_model

        # --model wins; else the library's choice from `photofind models use NAME`.
        model = self.model or active_model(self.library)
        if not model:
            raise PhotofindError(
                "no model chosen: pass --model NAME_OR_DIR or choose one with "
                "`photofind models use NAME` (for example tiny-synthetic, the small demo "
                "model that knows only generated shapes)"
            )
        from photofind import settings

        precision = settings.load(self.library)["precision"]
        return load_model(
            model,
            provider=self.provider,
            library=self.library,
            verified=self.verified,
            precision=precision,
        )

    @property
    def verified(self):
        """The user's record of hashed model files, which the command line keeps."""
        from photofind.clip.verified import user_record

        return user_record()

    def load_library_model(self):
        """The model to index the library with: ``--model``, else the choice of
        ``photofind models use``, else the model whose vectors the library already holds
        (a library indexed from the app or with ``--model`` needs no second choice)."""
        from photofind.library.catalog import CATALOG_NAME, Catalog
        from photofind.models.store import active_model

        if self.model or active_model(self.library):
            return self.load_model()
        held = None
        if (self.library / CATALOG_NAME).is_file():
            with Catalog.open(self.library, readonly=True) as catalog:
                held = catalog.model_id
        if held is None:
            return self.load_model()  # nothing indexed yet: the "no model chosen" error
        return self.load_held_model(held)

    def load_held_model(self, held: str):
        """The model whose vectors carry the id ``held`` (its name and image-encoder
        digest: a namesake with other weights makes other vectors), or the error that says
        what to do when this machine does not have it."""
        from photofind.library.model_session import load_model_by_id

        model = load_model_by_id(self.library, held, provider=self.provider, verified=self.verified)
        if model is None:
            raise PhotofindError(
                f"the library {self.library} was indexed with model "
                f"{ModelId.parse(held).name!r}, which is not installed here: install it, "
                "pass its package folder with --model, or choose another model with "
                "`photofind models use NAME` (the library is then re-indexed for it)"
            )
        return model


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``add_arguments`` of a command without options of its own."""


@dataclass(frozen=True)
class Command:
    """One subcommand: its name and help, what adds its options to its parser, and what
    runs it with the parsed arguments (an exit status; None means 0)."""

    name: str
    help: str
    run: Callable[[argparse.Namespace, Context], int | None]
    add_arguments: Callable[[argparse.ArgumentParser], None] = no_arguments


def emit_json(value) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def shown(path: str) -> str:
    """A path that JSON output can encode (non-UTF-8 bytes shown as escapes); text lines use
    :func:`photofind.terminal.printable`, which also escapes control characters."""
    return path.encode("utf-8", "backslashreplace").decode("utf-8")


def open_library(ctx: Context, *, readonly: bool):
    """The library of ``ctx``, opened; a PhotofindError that says what to do when there is
    none yet (read-only) or another process writes it (for writing)."""
    from photofind.library.catalog import CATALOG_NAME
    from photofind.library.library import Library
    from photofind.library.lockfile import LibraryLockedError

    if readonly and not (ctx.library / CATALOG_NAME).exists():
        demo = ctx.library / "demo"
        hint = (
            f" (the demo library is {demo}: `photofind --library {demo} ...` reads it)"
            if (demo / CATALOG_NAME).exists()
            else ""
        )
        raise PhotofindError(
            f"no photofind library at {ctx.library} yet: add photos with "
            f"`photofind index FOLDER`{hint}"
        )
    try:
        return Library.open(ctx.library, readonly=readonly)
    except LibraryLockedError as exc:
        holder = f"pid {exc.pid}" if exc.pid else "pid unknown"
        raise PhotofindError(
            f"the library {ctx.library} is open for writing in another photofind process "
            f"({holder}: the app, `photofind index` or `photofind watch`), and this command "
            f"writes to it: close that or wait for it to end. Meanwhile {READ_ONLY_COMMANDS} "
            "read the library: they open it read-only"
        ) from None


class IndexBar:
    """A progress callback of the indexer: one tqdm bar of photos on stderr."""

    def __init__(self, desc: str = "indexing"):
        from tqdm import tqdm

        self._bar = tqdm(total=0, desc=desc, unit="photo", file=sys.stderr, smoothing=0.1)

    def __call__(self, p) -> None:
        self._bar.total = p.total
        self._bar.update(p.done - self._bar.n)
        if p.failed:
            self._bar.set_postfix(failed=p.failed, refresh=False)

    def close(self) -> None:
        self._bar.close()


class StageProgress:
    """A ``progress(stage, done, total)`` callback drawing one tqdm bar per stage on stderr."""

    def __init__(self):
        self._bar = None
        self._stage = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = tqdm(total=total, desc=stage, unit="", file=sys.stderr, leave=False)
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
