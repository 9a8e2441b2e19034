"""Who a face is: the named person its nearest named faces agree on, or an unnamed group.

Two steps, on the 128-d embeddings of :mod:`photofind.faces`:

1. **Naming** (the seed report's k-NN): a face takes a person's name when, among its ``k``
   nearest named faces, those closer than ``threshold`` (dlib's 0.6) are in majority that
   person. A tie, or nothing close enough, leaves it unknown: a wrong name is worse than none
   (siblings who look alike stay apart until the user says who is who). "Not this person"
   on a face takes that person's faces out of its vote.
2. **Grouping**: the faces left unknown are clustered with dlib's Chinese whispers. On the
   shared photos (``tests/bench/bench_faces.py``) it and DBSCAN give the same partition at
   every threshold from 0.4 to 0.6 (DBSCAN with min_samples 1 or 2, its noise counted as
   groups of one), in milliseconds; Chinese whispers comes with dlib, needs no
   min_samples, and does not chain the way DBSCAN's single linkage does: a group joins along
   its edges by majority, so one stray edge between two people does not fuse them. A group is
   shown as an unnamed person once it has ``min_faces`` faces (3, as Immich's default); a
   face seen once or twice stays ungrouped until more come.

Named faces never enter the clustering, so two named people are never merged, nor is an
unnamed group joined to a named person: that takes the user's word.

:func:`regroup` runs both steps over a library's catalog after a face pass
(:class:`photofind.library.face_analyser.FaceAnalyser`'s ``after_pass``) and stores the
result: the library layer below finds and keeps the faces, this one decides who they are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

THRESHOLD = 0.6
K = 3
# Chinese whispers joins two faces by an edge when they are closer than this. Measured on the
# 18 distinct shots of 6 people: BCubed F1 0.96 at 0.5 (precision 1.0; one of Obama's photos a
# group of its own), 1.0 at 0.6, 0.79 at 0.4. 0.5 all the same, as dlib's own clustering
# example: a threshold's false edges grow with the pairs, n^2 (3,000 faces: 4.5 million
# pairs, so even a 0.1% false-accept rate at 0.6 would be 4,500 edges between people), and
# the shared set (6 people, no pair between 0.53 and 0.69) cannot show that rate. A wrong
# split costs the user one merge; a wrong merge a split face by face.
CLUSTER_THRESHOLD = 0.5
MIN_FACES = 3


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` (n x d) and of ``b`` (m x d): n x m."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def assign(
    embeddings: np.ndarray,
    named: np.ndarray,
    names: Sequence[str],
    *,
    k: int = K,
    threshold: float = THRESHOLD,
    not_these: Sequence[Collection[str]] | None = None,
) -> list[str | None]:
    """The person each of ``embeddings`` is, by its ``k`` nearest ``named`` faces, or None.

    ``not_these[i]``: the names the user said face ``i`` is not; their faces do not vote for
    it, and the k nearest are taken from the others."""
    embeddings = np.atleast_2d(np.asarray(embeddings, np.float32))
    if len(named) != len(names):
        raise ValueError(f"{len(named)} named faces but {len(names)} names")
    if not len(names) or not len(embeddings):
        return [None] * len(embeddings)
    if not_these is not None and len(not_these) != len(embeddings):
        raise ValueError(f"{len(embeddings)} faces but {len(not_these)} sets of rejected names")
    dist = distances(embeddings, named)
    result: list[str | None] = []
    for i, (row, order) in enumerate(zip(dist, np.argsort(dist, axis=1, kind="stable"))):
        rejected = not_these[i] if not_these is not None else ()
        nearest = [j for j in order if names[j] not in rejected][:k]
        votes = Counter(names[j] for j in nearest if row[j] < threshold)
        if not votes:
            result.append(None)
            continue
        best, count = votes.most_common(1)[0]
        result.append(best if count * 2 > sum(votes.values()) else None)
    return result


def chinese_whispers(embeddings: np.ndarray, threshold: float = CLUSTER_THRESHOLD) -> np.ndarray:
    """dlib's Chinese whispers: a label per face (0, 1, ...), every face in some cluster."""
    import dlib

    if not len(embeddings):
        return np.zeros(0, np.int64)
    vectors = [dlib.vector(np.asarray(e, np.float64).tolist()) for e in embeddings]
    return _renumbered(np.asarray(dlib.chinese_whispers_clustering(vectors, threshold)))


def dbscan(
    embeddings: np.ndarray, eps: float = CLUSTER_THRESHOLD, min_samples: int = 2
) -> np.ndarray:
    """DBSCAN (Ester et al., 1996) on Euclidean distance: a label per face, -1 for noise.

    Quadratic in memory (the distance matrix), which is fine for the comparison it serves.
    """
    n = len(embeddings)
    labels = np.full(n, -1, np.int64)
    if not n:
        return labels
    near = distances(embeddings, embeddings) <= eps
    core = near.sum(1) >= min_samples  # a point counts itself, as in scikit-learn
    cluster = 0
    for start in range(n):
        if labels[start] != -1 or not core[start]:
            continue
        labels[start] = cluster
        frontier = [start]
        while frontier:
            point = frontier.pop()
            if not core[point]:
                continue
            for other in np.flatnonzero(near[point]):
                if labels[other] == -1:
                    labels[other] = cluster
                    frontier.append(other)
        cluster += 1
    return labels


def _renumbered(labels: np.ndarray) -> np.ndarray:
    """Labels numbered by first appearance, so equal partitions give equal arrays."""
    mapping: dict[int, int] = {}
    return np.array([mapping.setdefault(int(x), len(mapping)) for x in labels], np.int64)


@dataclass
class Grouping:
    """Where every face went: a name, a shown unnamed group, or nowhere yet."""

    names: list[str | None]  # per face: the name given by the user or by k-NN
    groups: list[list[int]] = field(default_factory=list)  # unnamed, >= min_faces, biggest first
    ungrouped: list[int] = field(default_factory=list)  # unnamed faces in no shown group


def group_faces(
    embeddings: np.ndarray,
    labels: Sequence[str | None],
    *,
    k: int = K,
    threshold: float = THRESHOLD,
    cluster_threshold: float = CLUSTER_THRESHOLD,
    min_faces: int = MIN_FACES,
    not_these: Mapping[int, Collection[str]] | None = None,
) -> Grouping:
    """Name what the named faces allow, group the rest; ``labels`` are the user's names and
    ``not_these`` maps a face to the names the user took off it ("not this person")."""
    embeddings = np.asarray(embeddings, np.float32)
    if len(labels) != len(embeddings):
        raise ValueError(f"{len(embeddings)} faces but {len(labels)} labels")
    named = [i for i, name in enumerate(labels) if name is not None]
    unnamed = [i for i, name in enumerate(labels) if name is None]
    names = list(labels)
    rejected = not_these or {}
    guesses = assign(
        embeddings[unnamed],
        embeddings[named],
        [labels[i] for i in named],
        k=k,
        threshold=threshold,
        not_these=[rejected.get(i, ()) for i in unnamed],
    )
    for i, guess in zip(unnamed, guesses):
        names[i] = guess
    rest = [i for i in unnamed if names[i] is None]
    clusters: dict[int, list[int]] = {}
    for i, label in zip(rest, chinese_whispers(embeddings[rest], cluster_threshold)):
        clusters.setdefault(int(label), []).append(i)
    shown = sorted(
        (c for c in clusters.values() if len(c) >= min_faces), key=lambda c: (-len(c), c[0])
    )
    in_groups = {i for c in shown for i in c}
    return Grouping(names, shown, [i for i in rest if i not in in_groups])


@dataclass(frozen=True)
class Regrouped:
    """What :func:`regroup` did to the faces the machine places (not the user's)."""

    named: int  # faces the k-NN put on a person the user named
    groups: int  # unnamed people shown
    new_groups: int  # of which new
    ungrouped: int  # faces on no person


def regroup(
    catalog,
    *,
    k: int = K,
    threshold: float = THRESHOLD,
    cluster_threshold: float = CLUSTER_THRESHOLD,
    min_faces: int = MIN_FACES,
) -> Regrouped:
    """Decide again who every face not placed by the user is, and store it.

    The user's faces (named, moved or merged: ``assigned_by = 'user'``) are the labelled
    examples: a face joins their person when its ``k`` nearest ones agree within
    ``threshold`` (:func:`assign`, minus the people it was said not to be). The rest are
    clustered (:func:`group_faces`); a cluster of at least ``min_faces`` keeps the unnamed
    person most of its faces were on before (so a group keeps its id, and its hidden flag,
    from one pass to the next), or becomes a new one. A named person is never given an
    unnamed group's faces, nor two people joined: that is the user's merge.
    """
    state = catalog.face_state()
    user = [
        by == "user" and person is not None
        for person, by in zip(state.person_ids, state.assigned_by)
    ]
    labels = [str(p) if mine else None for p, mine in zip(state.person_ids, user)]
    not_these = {
        i: {str(p) for p in state.rejected.get(int(f), ())} for i, f in enumerate(state.ids)
    }
    grouping = group_faces(
        state.embeddings,
        labels,
        k=k,
        threshold=threshold,
        cluster_threshold=cluster_threshold,
        min_faces=min_faces,
        not_these={i: names for i, names in not_these.items() if names},
    )
    people_of: dict[int, int | None] = {}
    named = 0
    for i, (label, name) in enumerate(zip(labels, grouping.names)):
        if label is None and name is not None:
            people_of[int(state.ids[i])] = int(name)
            named += 1
    for i in grouping.ungrouped:
        people_of[int(state.ids[i])] = None
    new_groups = []
    claimed: set[int] = set()
    for group in grouping.groups:  # the biggest first: they keep their people first
        before = Counter(
            state.person_ids[i]
            for i in group
            if state.person_ids[i] is not None
            and state.person_ids[i] not in state.named
            and state.person_ids[i] not in claimed
        )
        if not before:
            new_groups.append([int(state.ids[i]) for i in group])
            continue
        person = before.most_common(1)[0][0]
        claimed.add(person)
        for i in group:
            face = int(state.ids[i])
            people_of[face] = None if person in state.rejected.get(face, ()) else person
    catalog.apply_grouping(people_of, new_groups)
    return Regrouped(named, len(grouping.groups), len(new_groups), len(grouping.ungrouped))


# -- the face pass as the library's settings want it ------------------------------------------


def min_faces_setting(library_dir) -> int:
    from photofind import settings

    return settings.load(library_dir)["faces.min_faces"]


def face_recognition_on(library_dir) -> bool:
    from photofind import settings

    return bool(settings.load(library_dir)["faces.enabled"])


def face_analysers(
    library_dir, *, min_faces: int | None = None, face_model=None, **options
) -> list:
    """The face analyser, grouping into people after each pass, as the library's settings
    want it (``faces.min_faces``): the list every index pass runs beside CLIP, ``[]`` when
    face recognition is off (``faces.enabled``). The CLI's ``index``, ``watch`` and the app
    all take it from here. Without ``face_model``, faces are found in worker processes, one
    per core (:func:`photofind.library.face_analyser.worker_count`): dlib's embedder holds
    the GIL, so threads of this process would wait for one another. ``options`` go to the
    analyser (``processes``, ``in_decode_threads``)."""
    if not face_recognition_on(library_dir):
        return []
    from photofind.library.face_analyser import FaceAnalyser, worker_count

    if face_model is None:
        options.setdefault("processes", worker_count())

    least = min_faces_setting(library_dir) if min_faces is None else min_faces

    def group(catalog) -> None:
        regroup(catalog, min_faces=least)

    return [FaceAnalyser(face_model, after_pass=group, **options)]


def corrected(catalog, library_dir) -> Regrouped:
    """After the user's word (a name, a merge, a split, a "not this person"): the grouping
    again, so that the k-NN names the faces the correction now reaches, at once."""
    return regroup(catalog, min_faces=min_faces_setting(library_dir))


def set_face_recognition(library, enabled: bool) -> int:
    """Turn face recognition on or off for ``library`` (its settings); off deletes every
    face, person, embedding and face thumbnail of its catalog first. Returns the faces
    deleted. A pass already running must be stopped first (the app's watcher is)."""
    from photofind import settings

    # The setting first: a pass that starts meanwhile already runs no face analyser.
    settings.update(library.root, {"faces.enabled": bool(enabled)})
    return 0 if enabled else library.catalog.forget_faces()
