"""Which model a library uses, which one is staged, and which index pass runs next.

A library holds the vectors of one model, the *active* one: searches use it. Choosing
another model for an indexed library stages a change (:meth:`Library.begin_model_change`):
the library is re-indexed for the *staged* model while searches keep the active model's
vectors, and the two swap when every photo has its new vector.

:class:`ModelSession` is the one place that decides this, with no Qt and no printing: the
command line (``index``, ``watch``, ``models use``, ``search``), the watcher and the window
all ask it. Its indexing order is the same for all of them (:meth:`ModelSession.next_pass`):

1. photos pending are encoded with the active model first, so they are searchable at once
   and a search never waits on a re-index; the other analysers (faces) run in the same
   pass, one decode serving both, except for a backlog of :data:`SEARCHABLE_FIRST` photos
   or more, which CLIP encodes alone before they follow (:meth:`ModelSession.pass_analysers`);
2. then the staged change re-indexes, and swaps;
3. photos that had no new vector at the swap are pending again, and step 1 takes them.

When the library holds the vectors of a model this machine does not have, nothing can
encode new photos for them: the chosen model is then the active one, and its first pass
(:meth:`Library.index_pending`) finishes the change before it encodes what is pending.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from photofind.library.model_id import ModelId

log = logging.getLogger(__name__)

#: an index pass: the photos pending, encoded with the active model
NEW = "new"
#: an index pass: the staged change re-indexing (and swapping at its end)
STAGED = "staged"
#: Photos waiting for their CLIP vector from which a pass encodes them without the other
#: analysers, which follow in a pass of their own. Faces beside CLIP hold CLIP to the
#: faces' pace (5-8 photos/s against 16-30 alone on 2 cores: tests/bench/faces_beside.py),
#: so a first index of 50,000 photos would be searchable after hours instead of half an
#: hour; the cost is a second, small decode of each photo (CLIP's draft-size JPEG decode,
#: about a tenth of a photo's CPU with faces). A few new photos go in one pass.
SEARCHABLE_FIRST = 200


@dataclass(frozen=True)
class Change:
    """What choosing a model did to a library."""

    #: a re-index for the chosen model runs (searches keep the held vectors until the swap)
    staged: bool
    #: the id of the vectors the library holds now (None: nothing indexed yet)
    held: str | None
    #: the id of a staged change the choice cancelled (switching back costs nothing)
    cancelled: str | None
    #: photos the re-index still has to encode
    todo: int = 0


def load_model_by_id(root: str | os.PathLike, mid: str, *, provider: str = "auto", verified=None):
    """The model, installed for the library in ``root`` or bundled, whose vectors carry the
    id ``mid`` (name and image-encoder hash), or None when this machine has no such package.
    Needs no open library: the command line looks before it opens one for writing.
    ``verified``: the record of hashed files :func:`photofind.clip.load_model` keeps."""
    from photofind.clip import available_models, load_model
    from photofind.clip.package import read_manifest
    from photofind.clip.variants import FP16, FP32, INT8, variant_faithful
    from photofind.errors import ModelError

    wanted = ModelId.parse(mid)
    found = available_models(Path(root))
    for folder in [found[wanted.name]] if wanted.name in found else list(found.values()):
        try:
            spec = read_manifest(folder)
        except ModelError:
            continue
        if spec.name != wanted.name:
            continue
        # The vectors' digest names the image graph that made them: fp32, int8 or fp16
        # (which is loaded as that variant wherever it runs, if its check passed).
        for role, variant in (("visual", FP32), ("visual_int8", INT8), ("visual_fp16", FP16)):
            entry = spec.files.get(role)
            if entry is not None and entry.sha256.startswith(wanted.digest):
                if variant != FP32 and not variant_faithful(spec, variant):
                    continue
                model = load_model(
                    folder,
                    provider=provider,
                    library=Path(root),
                    verified=verified,
                    variant=variant,
                )
                if ModelId.of(model).digest.startswith(wanted.digest):
                    return model
    return None


def _id(model) -> str:
    return str(ModelId.of(model))


class ModelSession:
    """The models of one open library: ``active`` (searches and new photos use it) and
    ``staged`` (a change re-indexes for it; None when none runs).

    One writer at a time uses a session (the watcher's worker, or the command that holds
    the library's lock); the window reads its own copy, refreshed when a change is begun
    and when the watcher reports a swap.
    """

    def __init__(self, library, active=None, staged=None, *, provider: str = "auto", verified=None):
        self.library = library
        self.active = active
        self.staged = staged
        #: how the held model is loaded when the session needs it (see load_model_by_id)
        self.provider = provider
        self.verified = verified

    @classmethod
    def open(cls, library, chosen, *, provider: str = "auto", verified=None) -> ModelSession:
        """The session of the user's choice ``chosen`` (made the library's model unless
        the library is read-only).

        While the library holds another model's vectors, that model stays active (new
        photos are searchable at once) and ``chosen`` is staged. When that model's package
        is not on this machine, ``chosen`` does both (see the module's docstring); a
        read-only library stages nothing.
        """
        session = cls(library, provider=provider, verified=verified)
        chosen = session.variant_kept(chosen)
        if not library.readonly:
            library.begin_model_change(chosen)
        held = library.catalog.model_id
        if held is None or held == _id(chosen):
            session.active = chosen
            return session
        active = session._load(held)
        if active is None:
            session.active = chosen
        else:
            session.active = active
            session.staged = None if library.readonly else chosen
        return session

    def variant_kept(self, chosen, *, provider: str | None = None):
        """``chosen``, or the variant of its package that the library's vectors (or its
        staged change) are of, when ``chosen`` came from the "fast" setting.

        "fast" picks by where the encoders run (int8 on the CPU, fp16 on CUDA, else fp32):
        a library opened on a GPU machine and on a laptop in turn, or by the app on CUDA
        and ``photofind index --provider cpu``, would otherwise re-index at every opening,
        each one throwing away the other's staged work. Held int8 or fp16 vectors are a
        "fast" choice as good as the other, so they stay; fp32 ones (made under "exact",
        or before the package had its int8 graphs) are re-indexed as before, once. A
        precision chosen in Settings (:meth:`choose`) re-indexes whatever is held; a
        provider chosen there asks this first (photofind.gui.model_controller), and
        ``provider`` is the one the kept variant is loaded for (default: the session's).
        """
        from photofind.clip.variants import FP16, INT8

        if chosen is None or getattr(chosen, "precision", None) != "fast":
            return chosen
        name = ModelId.of(chosen).name
        for mid in (self.library.catalog.staged_model_id, self.held):
            if mid is None or mid == _id(chosen) or ModelId.parse(mid).name != name:
                continue
            kept = self._load(mid, provider)
            if kept is not None and kept.variant in (INT8, FP16):
                log.info("keeping the %s vectors the library holds of %s", kept.variant, name)
                kept.precision = "fast"
                return kept
        return chosen

    def _load(self, mid: str, provider: str | None = None):
        return load_model_by_id(
            self.library.root, mid, provider=provider or self.provider, verified=self.verified
        )

    # -- what the library holds ------------------------------------------------------------

    @property
    def held(self) -> str | None:
        """The id of the vectors the library holds (searches compare with these)."""
        return self.library.catalog.model_id

    @property
    def target(self):
        """The model a change re-indexes for: the staged one, or the active one while the
        library still holds another model's vectors (whose package is not here); None when
        no change runs."""
        if self.staged is not None:
            return self.staged
        held = self.held
        if self.active is not None and held is not None and held != _id(self.active):
            return self.active
        return None

    def todo(self) -> int:
        """Photos a change still has to re-index (0 when none runs)."""
        done, total = self.library.catalog.staged_progress()
        return total - done

    # -- choosing ----------------------------------------------------------------------------

    def choose(self, model) -> Change:
        """Use ``model`` from now on (begins its change, or makes it active at once when the
        library holds no vectors or already holds its own). The models of this session
        whose vectors the library holds keep serving searches; else the one the library
        holds is loaded when this machine has it."""
        before = self.library.catalog.staged_model_id
        staged = self.library.begin_model_change(model)
        held = self.held
        if staged:
            searching = [m for m in (self.active, self.staged) if m and _id(m) == held]
            active = searching[0] if searching else None
            if active is None and held is not None:
                active = self._load(held)
            if active is not None:
                self.active, self.staged = active, model
            else:
                self.active, self.staged = model, None  # its first pass finishes the change
        else:
            self.active, self.staged = model, None
        return self._change(staged, before)

    def choose_package(
        self, folder: str | os.PathLike, *, verified=None, precision: str = "fast"
    ) -> Change:
        """Use the package in ``folder`` without opening its encoders (``photofind models
        use``: they open at the next index run). Its files are checked against their hashes
        (``verified``: the record of files already hashed), so that a package sharing the
        active model's image tower (the same hashed image graph and preprocessing) takes
        over the photo vectors at once, as :meth:`Library.begin_model_change` does. The
        session's models are left alone. ``precision`` picks the variant whose vectors it
        will make (photofind.clip.variants)."""
        from photofind.clip import load_model

        # The variant is the one this session's provider will run ("fast": int8 on the
        # CPU, fp16 on CUDA); no encoder opens here, on any provider.
        model = load_model(folder, provider=self.provider, verified=verified, precision=precision)
        mid, dim, tower = ModelId.of(model), model.info.dim, model.image_tower_id
        before = self.library.catalog.staged_model_id
        return self._change(self.library.begin_change(str(mid), dim, tower=tower), before)

    def _change(self, staged: bool, before: str | None) -> Change:
        """The :class:`Change` of a choice made while ``before`` was staged."""
        after = self.library.catalog.staged_model_id
        cancelled = before if before is not None and before != after else None
        return Change(staged, self.held, cancelled, self.todo() if staged else 0)

    # -- indexing ----------------------------------------------------------------------------

    def next_pass(self, analysers: Sequence = ()) -> str | None:
        """The pass to run now (:data:`NEW` or :data:`STAGED`), or None when nothing is left:
        new photos before the re-index, so that they are searchable at once. Work pending
        for one of ``analysers`` (the face pass; run after CLIP within a NEW pass) comes
        before the re-index too."""
        if self.active is None:
            return None
        held = self.held
        catalog = self.library.catalog
        if (
            catalog.counts().get("pending", 0)
            or (held is not None and held != _id(self.active))
            or any(a.pending_count(catalog) for a in analysers)
        ):
            return NEW
        if self.staged is not None:
            return STAGED
        return None

    def pass_analysers(
        self, analysers: Sequence, *, searchable_first: int = SEARCHABLE_FIRST
    ) -> list:
        """The analysers a :data:`NEW` pass runs beside CLIP now: none while
        ``searchable_first`` photos or more wait for their CLIP vector (they are encoded
        alone first, so that search has them sooner; :meth:`next_pass` then names the
        analysers' pass), else all of ``analysers``."""
        if not analysers:
            return []
        pending = self.library.catalog.counts().get("pending", 0)
        return [] if pending >= searchable_first else list(analysers)

    def run_pass(self, kind: str, *, progress=None, control=None, **options):
        """Run one pass of ``kind`` (as :meth:`next_pass` names it); the :class:`Library`'s
        stats. A re-index that swaps makes the staged model active here."""
        if kind == NEW:
            stats = self.library.index_pending(
                self.active, progress=progress, control=control, **options
            )
        elif kind == STAGED:
            if self.staged is None:
                raise ValueError("no staged model change runs")
            options.pop("analysers", None)  # a re-index encodes the CLIP vectors only
            stats = self.library.reindex_staged(
                self.staged, progress=progress, control=control, **options
            )
            if stats.swapped:
                self.active, self.staged = self.staged, None
        else:
            raise ValueError(f"unknown index pass {kind!r}")
        return stats
