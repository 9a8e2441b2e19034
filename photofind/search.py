"""The search engine: a query (sentence, picture, or a weighted sum of them) -> ranked photos.

Plain Python, no Qt: the CLI, the GUI and the tests use the same :class:`SearchEngine`.

- Text terms go through the model's text encoder; their vectors are cached per sentence
  (LRU), so typing the same words again, or paging, costs no encoder run.
- Picture terms use the photo's stored vector when the picture is in the library (no
  re-encoding) and run the image encoder only for files outside it.
- Filters (folders, capture date range, file types, people) become the set of allowed ids,
  handed to :meth:`VectorIndex.query`: the index searches among those photos only, so a
  filtered query still returns its ``k`` best and never an empty page because the nearest
  hundred were filtered away.
- The index holds vectors, an item (a photo, a video) one or more (a video one per frame):
  hits are grouped by item, each item ranked by its best vector, and a result reports that
  vector's frame time (``time_s``; None for a still).
- Results carry the photo id, its path and the cosine score, best first, paged with
  ``offset``/``k``; a relevance cut-off (:mod:`photofind.relevance`) ends the list where
  the photos stop standing out from the library.

The query syntax is documented in :mod:`photofind.query`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from photofind.clip.preprocess import draft_side
from photofind.errors import ImageError
from photofind.formats.kinds import VIDEO, kind_of
from photofind.formats.video import Video
from photofind.library.model_id import ModelId
from photofind.library.vector_index import dot
from photofind.query import IMAGE, PHOTO, TEXT, Query, parse_query
from photofind.relevance import (
    SAME_PICTURE,
    CutoffPolicy,
    policy_for,
    robust_threshold,
    sample_ids,
    z_for,
)
from photofind.search_filter import (  # noqa: F401 - callers import them from here
    PhotoTable,
    SearchError,
    SearchFilter,
    find_person,
    person_photos,
)

DEFAULT_K = 20
DEFAULT_TEXT_CACHE = 256

_cutoffs: ThreadPoolExecutor | None = None
_cutoffs_lock = threading.Lock()


def _cutoff_thread() -> ThreadPoolExecutor:
    """The one thread that works out queries' cut-offs while their k-NN searches run: both
    release the GIL (numpy's product with the background sample, hnswlib's walk), and on
    2 cores at 100,000 photos the two took 1.23 ms side by side against 1.75 in turn."""
    global _cutoffs
    with _cutoffs_lock:
        if _cutoffs is None:
            _cutoffs = ThreadPoolExecutor(1, thread_name_prefix="search-cutoff")
        return _cutoffs


def text_query_ef(photos: int) -> int:
    """The HNSW beam width for a query that holds a sentence, in a library of ``photos``.

    The index's own ef (128) is tuned on photo-like queries, which land among the photos.
    A CLIP text vector does not: its best matches score ~0.3, not ~0.9 (the gap between
    CLIP's text and image embeddings), and a graph walk from the entry point loses its way
    far more often. On clustered CLIP-like vectors (tests/bench/bench_query.py libraries,
    queries whose best cosine is ~0.3) recall@10 at ef 128 was 0.94 at 10,000 photos, 0.72
    at 100,000 and 0.18 at 1,000,000; 0.6 * photos**0.6 (150, 600, 2,400) brought it to
    0.94-0.99 for 0.5, 2.4 and 6 ms a query, small beside the ~35 ms of the text encoder.
    """
    return min(4096, max(128, int(0.6 * photos**0.6)))


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class SearchResult:
    photo_id: int  # the item's id
    path: str
    score: float
    #: the time of the item's best frame, in seconds (None: a still)
    time_s: float | None = None
    #: a video's length in ms (None: a still, or not known)
    duration_ms: int | None = None
    #: files of the same shot shown through this one: its RAW, its Live Photo clip
    #: (photofind.library.companions)
    companions: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchResults(Sequence):
    """One page of results, best first; iterable like a list of :class:`SearchResult`.

    ``threshold`` is the relevance cut-off applied (None: none); ``cut`` how many of the
    candidates fetched for this page fell below it; ``below`` how many photos the search
    could return (the filter's, or the whole library) lie below it, fetched or not;
    ``exhausted`` that no page follows.
    """

    results: tuple[SearchResult, ...]
    offset: int = 0
    threshold: float | None = None
    cut: int = 0
    exhausted: bool = True
    below: int = 0
    #: the query's unit vector, to score a video hit's frames with (:meth:`SearchEngine.frames`)
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __getitem__(self, i):
        return self.results[i]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[SearchResult]:
        return iter(self.results)


def _indexed(ids: np.ndarray, index) -> int:
    """How many of ``ids`` the vector index holds (a photo may wait to be indexed)."""
    return int(np.count_nonzero(np.isin(ids, index.ids(), assume_unique=True)))


# ------------------------------------------------------------------------------ caching


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    size: int
    maxsize: int


class _TextVectors:
    """LRU cache of text-encoder outputs, by sentence. Thread-safe."""

    def __init__(self, model, maxsize: int):
        self._model = model
        self._maxsize = maxsize
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, text: str) -> np.ndarray:
        with self._lock:
            vector = self._vectors.get(text)
            if vector is not None:
                self._vectors.move_to_end(text)
                self.hits += 1
                return vector
            self.misses += 1
        vector = self._model.encode_texts([text])[0]
        vector.setflags(write=False)
        with self._lock:
            self._vectors[text] = vector
            self._vectors.move_to_end(text)
            while len(self._vectors) > self._maxsize:
                self._vectors.popitem(last=False)
        return vector

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self.hits, self.misses, len(self._vectors), self._maxsize)


# ------------------------------------------------------------------------------ the engine


@dataclass
class _Snapshot:
    key: tuple
    value: object = field(default=None)


class SearchEngine:
    """Searches one :class:`photofind.library.library.Library` with one model.

    The model must be the one whose vectors the library holds (checked on every search).
    Safe to call from several threads; a GUI runs it off its own thread.
    """

    def __init__(
        self,
        library,
        model,
        *,
        text_cache_size: int = DEFAULT_TEXT_CACHE,
        policy: CutoffPolicy | None = None,
    ):
        from photofind.library.library import model_id

        self.library = library
        self.model = model
        self.model_id = model_id(model)
        self.policy = policy or policy_for(model)
        self._texts = _TextVectors(model, text_cache_size)
        self._table: _Snapshot | None = None
        self._background: _Snapshot | None = None
        self._lock = threading.Lock()

    # -- public API -------------------------------------------------------------------------

    def search(
        self,
        query: str | Query,
        *,
        k: int = DEFAULT_K,
        offset: int = 0,
        filter: SearchFilter | None = None,
        cutoff: bool = True,
    ) -> SearchResults:
        """Photos for a query (text or the syntax of :mod:`photofind.query`), best first."""
        parsed = parse_query(query) if isinstance(query, str) else query
        if parsed.people:
            filter = (filter or SearchFilter()).with_people(parsed.people)
        if not parsed.terms:
            return self._photos_of(filter, k, offset)
        vector = self.query_vector(parsed)
        has_text = any(term.kind == TEXT for term in parsed.terms)
        return self._rank(
            vector,
            k,
            offset,
            filter,
            cutoff,
            plain_text=parsed.is_plain_text,
            image_only=not has_text,
            far=has_text,
        )

    def similar(
        self,
        photo: int | str | os.PathLike,
        *,
        k: int = DEFAULT_K,
        offset: int = 0,
        filter: SearchFilter | None = None,
        cutoff: bool = False,
        time_s: float | None = None,
    ) -> SearchResults:
        """Photos that look like ``photo``: a library photo id, or a picture's path (the
        stored vector when the library holds it, else the file is encoded). The photo
        itself, when in the library, comes first. ``cutoff``: end the list where the photos
        stop standing out (the policy's ``image_z``; the GUI and ``photofind similar`` do);
        off by default for callers that page through the whole library by likeness.

        ``time_s``: ``photo`` is a video of the library and the query is its sampled frame
        nearest that time (photos and other videos that look like that moment)."""
        if time_s is not None:
            vector = self._frame_vector(photo, time_s)
        else:
            query = (
                Query.photo(photo) if isinstance(photo, (int, np.integer)) else Query.image(photo)
            )
            vector = self.query_vector(query)
        return self._rank(vector, k, offset, filter, cutoff, plain_text=False, image_only=True)

    def _frame_vector(self, photo, time_s: float) -> np.ndarray:
        catalog = self.library.catalog
        if isinstance(photo, (int, np.integer)):
            item = catalog.photo(int(photo))
        else:
            item = catalog.photo_by_path(os.path.abspath(os.path.expanduser(os.fspath(photo))))
        vector = None if item is None else catalog.frame_vector(item.id, round(time_s * 1000))
        if vector is None:
            raise SearchError(f"{photo}: not a video of the library with sampled frames")
        self._check_model()
        return vector

    def _video_vector(self, path: str) -> np.ndarray:
        """A video outside the library searched by: its sampled frames' mean direction."""
        try:
            frames = [f.image for f in Video(path).frames(draft_side(self.model.spec.image_size))]
        except ImageError as exc:
            raise SearchError(str(exc)) from exc
        vectors = self.model.encode_images(frames)
        mean = vectors.mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    def frames(self, item_id: int, vector: np.ndarray) -> list[tuple[float | None, float]]:
        """``(time in s, score)`` of each sampled frame of the item against a query's
        ``vector`` (:attr:`SearchResults.vector`), best first: the frames a preview of a
        video hit shows. A still gives its one vector, time None."""
        return self.library.catalog.frame_scores(int(item_id), vector)

    def query_vector(self, query: str | Query) -> np.ndarray:
        """The unit vector a query searches with: the normalised weighted sum of its terms."""
        parsed = parse_query(query) if isinstance(query, str) else query
        total = np.zeros(self.model.info.dim, dtype=np.float64)
        for term in parsed.terms:
            total += term.weight * self._term_vector(term.kind, term.value)
        norm = float(np.linalg.norm(total))
        if not np.isfinite(norm):
            # Weights are bounded (photofind.query), so only a damaged vector gets here; a NaN
            # query would rank every photo "nan".
            raise SearchError(
                f"query {str(parsed)!r}: a term's vector is not finite (NaN or infinity)"
            )
        if norm < 1e-6:
            raise SearchError(f"query {str(parsed)!r}: its terms cancel out, nothing is left")
        return (total / norm).astype(np.float32)

    def text_vector(self, text: str) -> np.ndarray:
        return self._texts.get(text)

    def cache_info(self) -> CacheInfo:
        """Hits and misses of the text-vector cache."""
        return self._texts.info()

    def refresh(self) -> None:
        """Forget the cached photo table and background sample (after moves or a scan;
        changes of the embeddings themselves are noticed without this)."""
        with self._lock:
            self._table = None
            self._background = None

    def threshold(
        self, vector: np.ndarray, *, plain_text: bool, image_only: bool = False, index=None
    ) -> float | None:
        """The relevance cut-off for a query vector (None when no rule applies);
        ``image_only``: the query holds pictures and no words (the policy's ``image_z``)."""
        bounds = []
        if plain_text and self.policy.min_score is not None:
            bounds.append(self.policy.min_score)
        background = self._background_vectors(index)
        z = z_for(self.policy, image_only=image_only)
        if background is not None and z is not None:
            bounds.append(robust_threshold(dot(background, vector), z))
        if not bounds:
            return None
        return min(max(bounds), SAME_PICTURE) if image_only else max(bounds)

    # -- internals ------------------------------------------------------------------------

    def _check_model(self, index=None) -> bool:
        """False when the library holds no vectors yet; raises on another model's vectors.

        With ``index``, that vector index must hold this model's vectors too: a model change
        swaps the catalog's model and then the library's index, and a query that read the
        catalog before the swap and the index after it must not mix the two models.
        """
        held = self.library.catalog.model_id
        if held is None:
            return False
        if index is not None and held == self.model_id and index.model_id != held:
            held = index.model_id or held
        if held != self.model_id:
            staged = self.library.catalog.staged_model_id
            hint = (
                "the library has just switched to it: open a new search with that model"
                if staged is None
                else "search with that model until the re-index for "
                f"{ModelId.parse(staged).name!r} is done"
            )
            raise SearchError(
                f"the library {self.library.root} holds vectors of model {ModelId.parse(held).name!r} "
                f"({held}); this search uses {self.model_id}: {hint}"
            )
        return True

    def _term_vector(self, kind: str, value) -> np.ndarray:
        if kind == TEXT:
            return self._texts.get(value)
        catalog = self.library.catalog
        if kind == PHOTO:
            vector = catalog.embedding(int(value))
            if vector is None:
                raise SearchError(
                    f"photo {value} is not in the library {self.library.root} or has no vector "
                    "yet (not indexed)"
                )
            self._check_model()
            return vector
        if kind == IMAGE:
            path = os.path.abspath(os.path.expanduser(os.fspath(value)))
            photo = catalog.photo_by_path(path)
            if photo is not None:
                vector = catalog.embedding(photo.id)
                if vector is not None:
                    self._check_model()
                    return vector
            if os.path.isdir(path):
                raise SearchError(
                    f"img: takes a photo file; {value} is a folder (to search the photos in "
                    "it, filter by folder)"
                )
            if not os.path.isfile(path):
                raise SearchError(f"{value}: no such picture file")
            if kind_of(path) == VIDEO:
                return self._video_vector(path)
            return self.model.encode_images([path])[0]
        raise SearchError(f"unknown query term kind {kind!r}")

    def _photos_of(self, filter: SearchFilter, k: int, offset: int) -> SearchResults:
        """A query of people only: their photos that pass ``filter``, newest first. Nothing
        ranks them, so each scores 1.0 (it shows the people asked for)."""
        if k < 0 or offset < 0:
            raise SearchError(f"k ({k}) and offset ({offset}) must not be negative")
        table = self._photo_table()
        allowed = np.isin(table.ids, table.allowed(filter, self.library.catalog))
        order = sorted(np.flatnonzero(allowed), key=lambda i: (table.dates[i], table.ids[i]))[::-1]
        page = [int(table.ids[i]) for i in order[offset : offset + k]]
        photos = self.library.catalog.photos_by_id(page)
        results = tuple(SearchResult(i, photos[i].path, 1.0) for i in page if i in photos)
        return SearchResults(results, offset, exhausted=offset + k >= len(order))

    def _rank(
        self, vector, k, offset, filter, cutoff, *, plain_text, image_only=False, far=False
    ) -> SearchResults:
        """``far``: the vector may lie away from every photo (it holds a sentence), so the
        graph search gets the wider beam of :func:`text_query_ef`."""
        if k < 0 or offset < 0:
            raise SearchError(f"k ({k}) and offset ({offset}) must not be negative")
        index = self.library.index  # one index for the whole query (a swap may replace it)
        if not self._check_model(index):
            return SearchResults((), offset)
        table = self._photo_table()
        allowed = allowed_items = None
        if filter is not None and not filter.is_empty:
            allowed_items = table.allowed(filter, self.library.catalog)
            allowed = table.vectors_of(allowed_items)
        hidden = table.hidden(allowed_items)
        limit = (
            _cutoff_thread().submit(
                self.threshold, vector, plain_text=plain_text, image_only=image_only, index=index
            )
            if cutoff
            else None
        )
        want = offset + k
        ef = text_query_ef(len(index)) if far else None
        try:
            ids, scores, times = self._best_items(index, vector, want, allowed, ef, hidden)
        finally:
            limit = None if limit is None else limit.result()
        fetched = len(ids)
        cut = below = 0
        if limit is not None:
            keep = scores >= limit
            cut = below = int(np.count_nonzero(~keep))
            ids, scores, times = ids[keep], scores[keep], times[keep]
            if cut and fetched == want:
                # The list is best first: every photo not fetched scores lower still.
                candidates = len(index) if allowed is None else _indexed(allowed, index)
                below = max(cut, candidates - len(ids))
        page = ids[offset:want].tolist()
        photos = self.library.catalog.photos_by_id(page)
        results = []
        for photo_id, score, ms in zip(page, scores[offset:want].tolist(), times[offset:want]):
            photo = photos.get(photo_id)
            if photo is not None:  # removed since the index answered
                time_s = None if ms < 0 else float(ms) / 1000.0
                found = table.companions.get(photo_id, ())
                results.append(
                    SearchResult(
                        photo_id, photo.path, float(score), time_s, photo.duration_ms, found
                    )
                )
        exhausted = fetched < want or cut > 0
        return SearchResults(tuple(results), offset, limit, cut, exhausted, below, vector)

    def _best_items(self, index, vector, want: int, allowed, ef, hidden=frozenset()):
        """The ``want`` best items: ``(item ids, scores, best frame ms or -1)``, best first.

        An item with many vectors (a video's frames) may fill several of the index's
        nearest hits, and a companion (``hidden``: a RAW shown through its JPEG) none, so
        the index is asked for more until ``want`` distinct items came back or it has no
        more to give.
        """
        asked = want
        catalog = self.library.catalog
        while True:
            vids, scores = index.query(
                vector, asked, filter=allowed, ef=ef, read=self._reader(index)
            )
            places = catalog.vector_places(vids.tolist()) if len(vids) else {}
            items: dict[int, tuple[float, int]] = {}
            for vid, score in zip(vids.tolist(), scores.tolist()):
                place = places.get(vid)
                if place is None or place[0] in items:  # removed since, or a worse frame
                    continue
                if place[0] in hidden:
                    continue
                items[place[0]] = (score, -1 if place[1] is None else place[1])
            if len(items) >= want or len(vids) < asked or asked >= len(index):
                break
            asked = min(len(index), asked * 2)
        ids = np.fromiter(items, dtype=np.int64, count=len(items))
        best = np.asarray([v[0] for v in items.values()], dtype=np.float32)
        times = np.asarray([v[1] for v in items.values()], dtype=np.int64)
        return ids[:want], best[:want], times[:want]

    def _reader(self, index):
        """Reads vectors of ``index`` from the catalog (the same float32 values, and faster
        than hnswlib's get_items); ``_check_model`` made sure both hold one model's."""
        catalog = self.library.catalog
        return lambda ids: catalog.vectors_by_id(ids, index.model_id)

    def _photo_table(self) -> PhotoTable:
        key = (self.library.catalog.generation, len(self.library.index))
        with self._lock:
            if self._table is None or self._table.key != key:
                self._table = _Snapshot(key, PhotoTable(self.library.catalog))
            return self._table.value

    def _background_vectors(self, index=None) -> np.ndarray | None:
        index = self.library.index if index is None else index
        key = (index.model_id, index.generation, len(index))
        with self._lock:
            if self._background is None or self._background.key != key:
                value = None
                if len(index) >= self.policy.min_library:
                    chosen = sample_ids(index.ids(), self.policy.sample)
                    value = self._reader(index)(chosen)[1]
                    value = value if len(value) else None
                self._background = _Snapshot(key, value)
            return self._background.value
