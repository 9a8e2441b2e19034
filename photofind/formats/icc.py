"""ICC profiles made from a colour space's primaries, white point and tone curve.

Pillow's ImageCms makes only sRGB, LAB and XYZ profiles; a HEIC from a phone often states
its colours as CICP/nclx code points (Display P3, BT.2020) instead of an embedded ICC
profile, and those need a profile for LittleCMS to convert from. An ICC v2 matrix/shaper
display profile is small and fully defined by what is written here: the three colorants
(the primaries as XYZ, chromatically adapted to the D50 connection space with the Bradford
transform, ICC.1:2001-04 Annex E), the media white point and one tone curve per channel.
"""

from __future__ import annotations

import struct

import numpy as np

# xy chromaticities of the primaries (red, green, blue) and white point, by name.
PRIMARIES = {
    "srgb": ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060)),
    "display-p3": ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)),
    "adobe-rgb": ((0.640, 0.330), (0.210, 0.710), (0.150, 0.060)),
    "bt2020": ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)),
}
D65 = (0.3127, 0.3290)
_D50_XYZ = np.array([0.9642, 1.0, 0.8249])
_BRADFORD = np.array(
    [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]]
)


def _xyz(xy) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1.0 - x - y) / y])


def rgb_to_xyz_matrix(primaries, white=D65) -> np.ndarray:
    """The 3x3 matrix from linear RGB to XYZ (Y of white = 1), in the space's own white."""
    columns = np.stack([_xyz(p) for p in primaries], axis=1)
    scale = np.linalg.solve(columns, _xyz(white))
    return columns * scale


def adapted_to_d50(matrix: np.ndarray, white=D65) -> np.ndarray:
    """``matrix`` (to XYZ in ``white``) followed by the Bradford adaptation to D50."""
    src = _BRADFORD @ _xyz(white)
    dst = _BRADFORD @ _D50_XYZ
    adapt = np.linalg.inv(_BRADFORD) @ np.diag(dst / src) @ _BRADFORD
    return adapt @ matrix


def srgb_curve(n: int = 1024) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1) sampled at ``n`` points, 0..1."""
    v = np.linspace(0.0, 1.0, n)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _s15(v: float) -> bytes:
    return struct.pack(">i", int(round(v * 65536)))


def _xyz_tag(xyz) -> bytes:
    return b"XYZ " + b"\0" * 4 + b"".join(_s15(c) for c in xyz)


def _curve_tag(gamma: float | None) -> bytes:
    if gamma is not None:
        # One entry: a pure power law, as u8Fixed8Number.
        return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, int(round(gamma * 256))) + b"\0\0"
    table = np.rint(srgb_curve() * 65535).astype(">u2")
    body = b"curv" + b"\0" * 4 + struct.pack(">I", table.size) + table.tobytes()
    return body + b"\0" * (-len(body) % 4)


def _desc_tag(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    body = b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_)) + ascii_
    body += struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + b"\0" * 67
    return body + b"\0" * (-len(body) % 4)


def _text_tag(text: str) -> bytes:
    body = b"text" + b"\0" * 4 + text.encode("ascii") + b"\0"
    return body + b"\0" * (-len(body) % 4)


def rgb_profile(name: str, *, gamma: float | None = None, description: str | None = None) -> bytes:
    """The bytes of an ICC v2 RGB display profile for the space ``name`` of
    :data:`PRIMARIES` (white D65). ``gamma``: a power-law tone curve (Adobe RGB: 563/256);
    None: the sRGB curve (sRGB and Display P3 share it)."""
    matrix = adapted_to_d50(rgb_to_xyz_matrix(PRIMARIES[name]))
    curve = _curve_tag(gamma)
    tags = [
        (b"desc", _desc_tag(description or name)),
        (b"cprt", _text_tag("No copyright, use freely")),
        (b"wtpt", _xyz_tag(_D50_XYZ)),
        (b"rXYZ", _xyz_tag(matrix[:, 0])),
        (b"gXYZ", _xyz_tag(matrix[:, 1])),
        (b"bXYZ", _xyz_tag(matrix[:, 2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data, placed = [], b"", {}
    for sig, body in tags:
        if body not in placed:  # the three channels share one curve
            placed[body] = offset + len(data)
            data += body
        table.append(struct.pack(">4sII", sig, placed[body], len(body)))
    size = offset + len(data)
    header = struct.pack(">I4sI4s4s4s", size, b"\0" * 4, 0x02100000, b"mntr", b"RGB ", b"XYZ ")
    header += struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 4
    header += struct.pack(">I4s4sQI", 0, b"\0" * 4, b"\0" * 4, 0, 0)
    header += b"".join(_s15(c) for c in _D50_XYZ) + b"\0" * 4
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + b"".join(table) + data
