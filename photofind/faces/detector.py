"""Faces in one picture: where they are, how sure the detector is, and who they look like.

dlib does all of it: the HOG detector (built into dlib; the CNN one on request), the 5-point
landmark model, and the ResNet embedder that turns the aligned 150x150 face chip into a
128-d vector in which two photos of one person lie closer than 0.6 (Euclidean).

Sizes and times, measured by ``tests/bench/bench_faces.py`` on ``../shared/data/faces``:

- The detector sees the picture with its longer side at most ``max_side`` (1,200 px): larger
  pictures are scaled down for detection only, since HOG's time grows with the pixels
  (0.09-0.12 s per photo of at most 1,200 px on one core; the whole :meth:`FaceModel.find`
  0.22-0.28 s, most of it the embedder's ~0.1 s per face). Landmarks, chip and thumbnail
  are taken from the picture as given, so a large photo still gives a sharp chip.
- HOG's window is 80 px, so it misses smaller faces. Pictures of at most
  ``UPSAMPLE_MAX_PIXELS`` (854 x 480: SD video frames, thumbnails, old photos) are upsampled
  once by dlib, which finds faces down to ~40 px: 0.10 s for a 640 x 360 frame against
  0.085 s for a 1,200 x 675 photo. On the 640 x 360 clip of the shared data that finds 13
  faces in 19 sampled frames instead of 11.
- Faces smaller than ``MIN_FACE`` px (the box's shorter side, in the picture's own pixels) are
  dropped: below it the embedding of a known face drifts too far (see ``MIN_FACE``).

The caller decodes and turns the picture upright (EXIF orientation); this module only reads
pixels. Threads: the HOG detector releases the GIL, the embedder does not (dlib's binding of
``face_recognition_model_v1`` has no GIL release; a Python thread runs at 5-15% of its speed
while an embedding runs, at 60-70% while HOG runs). So threads can only overlap one photo's
detection with another's embedding: ~1.7x at best, as ~0.13 s of a photo's 0.22 s hold the
GIL. A process per core is the way to use both cores. dlib does not document its objects as thread-safe: one :class:`FaceModel`
per thread or process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from photofind.errors import ImageError, ModelError
from photofind.faces.models import CNN_DETECTOR, EMBEDDER, LANDMARKS, model_file

DEFAULT_MAX_SIDE = 1200
UPSAMPLE_MAX_PIXELS = 854 * 480
# The smallest face kept, in pixels of the box's shorter side. bench_faces.py's size sweep
# shrinks the 17 single-face photos until the face is N px and compares the embedding with the
# same face at full size: the drift (median/max) is 0.07/0.12 at 93 px (the box found), 0.20/
# 0.24 at 45, 0.23/0.29 at 38, 0.28/0.33 at 32, 0.35/0.42 at 27 and 0.44/0.53 at 23, where
# same/different pairs at 0.6 start to fail (268 of 272 right; 271 at 27). Two distinct photos
# of one person already lie 0.40 apart (median; 0.53 at most) on that set, so a drift above
# ~0.25 eats the margin to 0.6 that a library of many look-alike people needs: 40 px, also
# about the smallest face the once-upsampled HOG pass finds.
MIN_FACE = 40
# A crowd: a picture too large to upsample whose first pass found at least CROWD_FACES faces,
# the smallest under CROWD_SMALL px at detection size, holds smaller faces still, behind the
# first rows, that HOG's 80 px window missed. Such a picture is searched again upsampled
# once (~4x the HOG time), which finds faces down to ~40 px. On a tiled crowd of 208 real
# faces (tests/test_faces_bad_input.py) at 1,200 px, HOG alone found the 45 largest; the
# second pass all 208. Only group photos pay: a portrait, or two people, never do.
CROWD_FACES = 3
CROWD_SMALL = 120
THUMBNAIL_SIZE = 128
# The embedder was trained on chips made this way (dlib's defaults); other values degrade it.
CHIP_SIZE = 150
CHIP_PADDING = 0.25
# A thumbnail shows the face with some hair and chin around the detector's tight box.
THUMBNAIL_MARGIN = 1.6


@dataclass(frozen=True, eq=False)
class Face:
    """One face found in a picture; coordinates are in that picture's pixels."""

    box: tuple[int, int, int, int]  # left, top, right, bottom (exclusive), clipped to the picture
    score: float  # the detector's confidence: HOG's SVM margin (> 0 kept) or the CNN's
    landmarks: np.ndarray  # (5, 2) float32 x, y: eye corners and the base of the nose
    embedding: np.ndarray  # (128,) float32
    thumbnail: np.ndarray  # (THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3) uint8 RGB

    @property
    def size(self) -> int:
        """The shorter side of the box, the measure of :data:`MIN_FACE`."""
        left, top, right, bottom = self.box
        return min(right - left, bottom - top)

    def thumbnail_image(self) -> Image.Image:
        return Image.fromarray(self.thumbnail, "RGB")


def as_rgb(image) -> np.ndarray:
    """A PIL image or a numpy array as a contiguous H x W x 3 uint8 array."""
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.ascontiguousarray(np.asarray(image))
    if not isinstance(image, np.ndarray):
        raise ImageError(f"face detection needs a PIL image or a numpy array, got {type(image)}")
    if image.dtype != np.uint8:
        raise ImageError(f"face detection needs 8-bit pixels, got a {image.dtype} array")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"face detection needs H x W x 3 RGB pixels, got shape {image.shape}")
    return np.ascontiguousarray(image)


def _load(loader, path: Path):
    try:
        return loader(str(path))
    except RuntimeError as exc:  # dlib's deserialisation errors
        raise ModelError(f"{path}: not a dlib model ({str(exc).strip().splitlines()[0]})") from exc


class FaceModel:
    """dlib's detector, landmark model and embedder, loaded once (about 0.3 s)."""

    def __init__(
        self,
        folder: Path | None = None,
        *,
        detector: str = "hog",
        max_side: int = DEFAULT_MAX_SIDE,
        min_face: int = MIN_FACE,
        upsample: int | None = None,
    ):
        """``upsample``: how often dlib doubles the picture before detecting; None: once for
        pictures of at most UPSAMPLE_MAX_PIXELS, else never."""
        import dlib  # a compiled module of 20 MB: loaded when faces are wanted, not on import

        if detector not in ("hog", "cnn"):
            raise ValueError(f"unknown face detector {detector!r}: 'hog' or 'cnn'")
        self._dlib = dlib
        self.detector_name = detector
        self.max_side = max_side
        self.min_face = min_face
        self.upsample = upsample
        self._landmarks = _load(dlib.shape_predictor, model_file(LANDMARKS, folder))
        self._embedder = _load(dlib.face_recognition_model_v1, model_file(EMBEDDER, folder))
        if detector == "cnn":
            self._cnn = _load(dlib.cnn_face_detection_model_v1, model_file(CNN_DETECTOR, folder))
        else:
            self._hog = dlib.get_frontal_face_detector()

    def find(self, image) -> list[Face]:
        """Every face of at least ``min_face`` px, the most confident first."""
        rgb = as_rgb(image)
        faces = []
        for rect, score in self.detect(rgb):
            if min(rect.width(), rect.height()) < self.min_face:
                continue
            faces.append(self._describe(rgb, rect, score))
        return faces

    def detect(self, rgb: np.ndarray) -> list[tuple[object, float]]:
        """(dlib rectangle in ``rgb``'s pixels, score) of every face, of any size."""
        height, width = rgb.shape[:2]
        if min(height, width) < 2:
            return []
        scale = min(1.0, self.max_side / max(height, width))
        small = rgb
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR, reducing_gap=2.0))
        upsample = self.upsample
        if upsample is None:
            upsample = 1 if small.shape[0] * small.shape[1] <= UPSAMPLE_MAX_PIXELS else 0
        found = self._run(small, upsample)
        if self.upsample is None and upsample == 0 and _crowd(found):
            found = self._run(small, 1)
        if scale < 1.0:
            found = [(self._scaled(rect, 1.0 / scale), score) for rect, score in found]
        found.sort(key=lambda pair: -pair[1])
        return found

    def _run(self, small: np.ndarray, upsample: int) -> list[tuple[object, float]]:
        if self.detector_name == "cnn":
            return [(d.rect, float(d.confidence)) for d in self._cnn(small, upsample)]
        rects, scores, _ = self._hog.run(small, upsample, 0.0)
        return list(zip(rects, (float(s) for s in scores)))

    def _scaled(self, rect, factor: float):
        return self._dlib.rectangle(
            round(rect.left() * factor),
            round(rect.top() * factor),
            round(rect.right() * factor),
            round(rect.bottom() * factor),
        )

    def _describe(self, rgb: np.ndarray, rect, score: float) -> Face:
        shape = self._landmarks(rgb, rect)
        chip = self._dlib.get_face_chip(rgb, shape, CHIP_SIZE, CHIP_PADDING)
        embedding = np.asarray(self._embedder.compute_face_descriptor(chip), np.float32)
        height, width = rgb.shape[:2]
        # dlib's rectangles are inclusive and may reach past the picture's edge.
        box = (
            max(0, rect.left()),
            max(0, rect.top()),
            min(width, rect.right() + 1),
            min(height, rect.bottom() + 1),
        )
        points = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        return Face(box, score, points, embedding, thumbnail(rgb, rect))


def _crowd(found) -> bool:
    """Whether the faces found look like the first rows of a crowd (see CROWD_FACES)."""
    if len(found) < CROWD_FACES:
        return False
    return min(min(r.width(), r.height()) for r, _ in found) < CROWD_SMALL


def thumbnail(rgb: np.ndarray, rect) -> np.ndarray:
    """A square crop around the face, kept inside the picture, at THUMBNAIL_SIZE px."""
    height, width = rgb.shape[:2]
    side = round(max(rect.width(), rect.height()) * THUMBNAIL_MARGIN)
    side = max(1, min(side, width, height))
    cx = (rect.left() + rect.right() + 1) / 2
    cy = (rect.top() + rect.bottom() + 1) / 2
    left = int(min(max(0, round(cx - side / 2)), width - side))
    top = int(min(max(0, round(cy - side / 2)), height - side))
    crop = Image.fromarray(rgb[top : top + side, left : left + side])
    return np.asarray(crop.resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.BILINEAR))
