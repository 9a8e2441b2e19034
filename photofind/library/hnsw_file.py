"""Checking an hnswlib index file's structure without letting hnswlib read it.

hnswlib writes its file with a C++ ``ofstream`` and never checks the stream: on a full disk
``save_index`` returns normally after writing nothing, or part of the file. Its loader, in
turn, trusts what it reads (a wrong dimension makes it read past its buffers). So the
vector index checks every file it writes before it records the file in its sidecar, and
every file it loads before hnswlib sees it, with this walk of the layout (hnswlib 0.8's
``HierarchicalNSW::saveIndex``):

    header: 6 size_t (offsetLevel0, max_elements, cur_element_count,
            size_data_per_element, label_offset, offsetData), int maxlevel,
            uint32 enterpoint, 3 size_t (maxM, maxM0, M), double mult,
            size_t ef_construction                                   = 96 bytes
    level 0: cur_element_count * size_data_per_element bytes
    then per element: uint32 n, n bytes of upper-level links (n a multiple of
            maxM * 4 + 4)

The walk reads only the header and the upper-level part (~4 bytes a photo), not the
vectors; the sha256 in the sidecar covers those.
"""

from __future__ import annotations

import os
import struct

_HEADER = struct.Struct("<6Q i I 3Q d Q")
HEADER_SIZE = _HEADER.size  # 96
_U32 = struct.Struct("<I")


def structure_problem(path: str | os.PathLike, dim: int) -> str | None:
    """Why the file at ``path`` is not a whole hnswlib index of ``dim``-dimensional float
    vectors, or None when it is."""
    name = os.path.basename(os.fspath(path))
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < HEADER_SIZE:
            return f"{name} is {size} bytes, less than an index header ({HEADER_SIZE})"
        (
            offset_level0,
            max_elements,
            count,
            per_element,
            label_offset,
            offset_data,
            _max_level,
            _entry,
            max_m,
            max_m0,
            m,
            _mult,
            _ef_construction,
        ) = _HEADER.unpack(f.read(HEADER_SIZE))
        links0 = max_m0 * 4 + 4
        if (
            offset_level0 != 0
            or count > max_elements
            or m < 1
            or max_m != m
            or max_m0 != 2 * m
            or offset_data != links0
            or label_offset != links0 + 4 * dim
            or per_element != links0 + 4 * dim + 8
        ):
            return f"{name} does not have the header of an index of {dim}-dimensional vectors"
        level0_end = HEADER_SIZE + count * per_element
        if size < level0_end + 4 * count:
            return f"{name} is {size} bytes, at least {level0_end + 4 * count} expected (truncated)"
        f.seek(level0_end)
        upper = f.read(size - level0_end)
    links = max_m * 4 + 4
    pos = 0
    view = memoryview(upper)
    for _ in range(count):
        if pos + 4 > len(view):
            return f"{name} ends inside its link lists (truncated)"
        (n,) = _U32.unpack_from(view, pos)
        if n % links:
            return f"{name} has a damaged link list"
        pos += 4 + n
    if pos != len(view):
        return f"{name} is {size} bytes, {level0_end + pos} expected (truncated or damaged)"
    return None
