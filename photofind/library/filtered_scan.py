"""How a filtered query searches: when the allowed photos are few enough to score them all
(exactly, and faster than a graph walk in which almost every node is filtered out), and
how wide a graph walk's beam must be when they are not. Used by
:mod:`photofind.library.vector_index`, which re-exports it.
"""

from __future__ import annotations

import numpy as np

#: Microseconds to read one 512-d vector back: hnswlib's get_items (the fit below), and
#: the catalog's vectors_by_id (1,000 ids of 100,000 on 2 cores: 31 ms and 5 ms, one run).
GET_ITEMS_US, READ_US = 24.0, 5.0


def exact_filter_limit(live: int, scan_us: float = GET_ITEMS_US) -> int:
    """Most allowed photos a filtered query scans exactly; above it the graph searches.

    The scan costs ~24 us per allowed photo (reading its vector back out of hnswlib:
    get_items builds Python floats). The filtered graph search costs about c / share, share
    being the allowed part of the library, because hnswlib calls our Python filter on every
    node it visits; c grows slowly with the library (~1.1 ms at 100,000 photos, ~3 ms at
    1,000,000). Equal costs at m = sqrt(c * live / 24 us), which is about 0.54 * live**0.72:
    2,100 at 100,000 photos, 11,000 at 1,000,000 (both measured on 2 cores with
    tests/bench/bench_query.py's libraries: at 1M, 10,000 allowed took 244 ms exact and
    312 ms by the graph; 20,000 took 518 ms exact and 159 ms by the graph).

    With ``scan_us`` the cost per vector of another reader (the catalog's, READ_US), the
    crossover moves by sqrt(24 us / scan_us): 4,600 at 100,000 photos from the catalog.
    """
    return int(0.54 * live**0.72 * np.sqrt(GET_ITEMS_US / scan_us))


# Most nodes a filtered graph search visits are filtered out, so it needs a wider beam to
# find ``ef`` allowed ones: ef / sqrt(allowed share) kept recall@10 >= 0.99 at 5-10% of
# 100,000 photos where the plain ef gave 0.88 (queries far from every photo, the worst case).
FILTERED_EF_MAX = 2048


def dot(vectors: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``vectors @ vector``, computed on this thread.

    numpy hands a matrix-vector product to a multi-threaded BLAS, whose worker threads, on
    a busy 2-core machine (indexing, another program), wait for a time slice: 2,000 x 512
    took 4-12 ms that way against 0.1 ms with einsum, which does not use BLAS threads.
    """
    return np.einsum("ij,j->i", vectors, vector)
