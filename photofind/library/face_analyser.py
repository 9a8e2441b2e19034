"""The face analyser: every face of a photo (box, landmarks, score, embedding, thumbnail)
into the catalog's ``faces`` table, through the indexer's one writer thread.

It runs after the CLIP embedding (a larger ``priority``), so search is usable first, and
wants the picture at most ``max_side`` px on its longer side (1,200: the size
:class:`photofind.faces.FaceModel` detects at; see its module for the sizes and times).
Boxes and landmarks are stored in the upright photo's full-size pixels, whatever size the
decode and the detection ran at, so a preview can draw them on the photo as it is.

An item's faces and its state row are one transaction
(:meth:`photofind.library.face_records.FaceRecords.record_faces`): a killed pass leaves
each photo with all its faces or none, and the next pass does exactly the ones without.

A video (:class:`photofind.formats.video.Video`) has its faces found on each sampled frame,
decoded at the same size a photo is; each face keeps its frame's time (``frame_ms``) and its
box is in the video's upright full-size pixels.

Who the faces are is not decided here: that is :mod:`photofind.people`, a layer above the
library, handed in as ``after_pass`` (``photofind.people.regroup``) and run after every
pass that was not cancelled.
"""

from __future__ import annotations

import io
import queue
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from PIL import Image

from photofind.clip.preprocess import Picture
from photofind.clip.providers import cpu_threads
from photofind.errors import ImageError
from photofind.faces import MODEL_ID, FaceModel
from photofind.faces.worker import FaceProcesses, WorkerStopped
from photofind.formats.video import Video
from photofind.library.analysers import Analyser, Failure
from photofind.library.face_records import FACES, FaceRecord

DEFAULT_MAX_SIDE = 1200


def worker_count() -> int:
    """Worker processes for the face pass (:class:`FaceAnalyser`'s ``processes``): one per
    core, as many as the indexer's decode threads, each of which waits on one worker while
    that finds a photo's faces. Fewer would leave cores idle (2 workers on 16 cores: the
    faces of 2); in-process threads instead lose ~15% of each decode thread to the GIL that
    dlib's embedder holds (tests/bench/faces_beside.py ``decode_jobs_blocked_s``).

    Each worker holds ~117 MiB (dlib's models, Python, numpy): no more are started than a
    quarter of the memory free now holds, so 16 cores with little memory free do not
    start 16 (at least one always)."""
    return max(1, min(cpu_threads(), _free_memory() // (4 * WORKER_BYTES)))


#: resident memory of one face worker process (measured: 117 MiB)
WORKER_BYTES = 117 * 2**20


def _free_memory() -> int:
    """Bytes of memory available now (Linux: MemAvailable; elsewhere: as if plenty)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 62


# The thumbnail is shown at most ~128 px (the People panel): a JPEG of ~4 KB.
THUMB_QUALITY = 85


def thumb_jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


class FaceAnalyser(Analyser):
    """dlib's faces (:mod:`photofind.faces`) as an analyser of the indexing pipeline.

    ``face_model``: a :class:`photofind.faces.FaceModel` (default: the built-in one, loaded
    here); more of its kind are made when several threads find faces at once.
    ``after_pass(catalog)`` runs once a pass has gone through every photo (the grouping
    into people). ``in_decode_threads``: faces are found on the indexer's decode threads
    (both cores), else on its pipeline thread (one core). ``processes``: found in that many
    worker processes instead of this one, reached from the decode threads (every front end,
    :func:`worker_count` of them: dlib then holds none of this process's GIL)."""

    name = FACES
    model_id = MODEL_ID
    # After CLIP (0): faces take ~10x longer per photo than the embedding.
    priority = 10

    def __init__(
        self,
        face_model: FaceModel | None = None,
        *,
        max_side: int = DEFAULT_MAX_SIDE,
        after_pass: Callable[[object], object] | None = None,
        in_decode_threads: bool = True,
        processes: int = 0,
    ):
        self.max_side = max_side
        # The shorter side a JPEG may be decoded down to: a 4:3 photo then still has its
        # longer side at ``max_side`` or more (libjpeg's 1/2, 1/4, 1/8 scales).
        self.picture_side = (max_side * 3 + 3) // 4
        self.after_pass = after_pass
        self.in_decode_threads = in_decode_threads
        # ``processes``: faces are found in that many worker processes (photofind.faces.
        # worker), none of dlib's work in this one: no GIL held here, no model loaded here.
        self._processes = None
        if processes and face_model is None:
            self._settings = dict(max_side=max_side)
            self._processes = FaceProcesses(processes, **self._settings)
            model = None
        else:
            model = face_model if face_model is not None else FaceModel(max_side=max_side)
            self._settings = dict(
                detector=model.detector_name,
                max_side=model.max_side,
                min_face=model.min_face,
                upsample=model.upsample,
            )
        # Idle face models. dlib's objects are not to be used by two threads at once: each
        # call borrows one (making another when all are busy: one per decode thread).
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        if model is not None:
            self._idle.put(model)
        #: items analysed in this object's life, in the order their faces were handed on
        self.analysed: list[int] = []

    def close(self) -> None:
        """End the worker processes, if any (they start again when next needed)."""
        if self._processes is not None:
            self._processes.close()

    def _find(self, item, rgb: np.ndarray, scale: float) -> list[FaceRecord]:
        if self._processes is not None:
            try:
                faces = self._processes.find(rgb)
            except (ImageError, WorkerStopped) as exc:
                # A worker that died on this photo twice (it was restarted and the photo
                # tried again): the photo is recorded failed, with how the worker ended.
                raise ImageError(f"{item.path}: no faces read: {exc}") from exc
            return [self._record(face, scale) for face in faces]
        try:
            model = self._idle.get_nowait()
        except queue.Empty:
            model = FaceModel(**self._settings)
        try:
            faces = model.find(rgb)
        except ImageError as exc:
            raise ImageError(f"{item.path}: no faces read: {exc}") from exc
        finally:
            self._idle.put(model)
        return [self._record(face, scale) for face in faces]

    def prepare(self, item, picture: Picture | Video):
        """The picture at most ``max_side`` px and the factor back to full-size pixels; or,
        ``in_decode_threads``, its faces already. The HOG detector releases the GIL, so
        two decode threads find faces ~1.5x as fast as one (the embedder does not).

        A video's faces are always found here, frame by frame, so that only one frame's
        pixels are held at a time."""
        if isinstance(picture, Video):
            return self._video_faces(item, picture)
        decoded = picture.decoded()
        # Boxes are kept in the picture's own full-size pixels, also when a HEIC's stored
        # small copy was what got decoded.
        rgb, scale = self._fit(decoded.image, (decoded.picture_size or decoded.full_size)[0])
        if self.in_decode_threads:
            return self._find(item, rgb, scale)
        return rgb, scale

    def _video_faces(self, item, video: Video) -> list[FaceRecord]:
        faces: list[FaceRecord] = []
        for frame in video.frames(self.picture_side):
            rgb, scale = self._fit(frame.image, frame.full_size[0] or frame.image.width)
            faces.extend(replace(face, frame_ms=frame.ms) for face in self._find(item, rgb, scale))
        return faces

    def _fit(self, image: Image.Image, full_width: int) -> tuple[np.ndarray, float]:
        """The picture at most ``max_side`` px, as an array, and the factor back to
        full-size pixels."""
        if max(image.size) > self.max_side:
            factor = self.max_side / max(image.size)
            size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
            image = image.resize(size, Image.BILINEAR, reducing_gap=2.0)
        return np.asarray(image), full_width / image.width

    def analyse(self, items: Sequence, inputs: Sequence) -> list:
        out = []
        for item, prepared in zip(items, inputs, strict=True):
            if isinstance(prepared, tuple):
                try:
                    prepared = self._find(item, *prepared)
                except ImageError as exc:
                    out.append(Failure(str(exc)))
                    continue
            self.analysed.append(item.id)
            out.append(prepared)
        return out

    @staticmethod
    def _record(face, scale: float) -> FaceRecord:
        left, top, right, bottom = face.box
        box = (
            round(left * scale),
            round(top * scale),
            round((right - left) * scale),
            round((bottom - top) * scale),
        )
        return FaceRecord(
            box,
            face.score,
            (face.landmarks * scale).astype(np.float32),
            face.embedding,
            thumb_jpeg(face.thumbnail),
        )

    def record(self, catalog, done: Sequence[tuple], failed: Sequence[tuple]) -> None:
        catalog.record_faces(
            self.model_id,
            [(item.id, faces) for item, faces in done],
            [(item.id, reason) for item, reason in failed],
        )

    def finish(self, catalog) -> None:
        if catalog.settle_analyser(self.name, self.model_id):
            catalog.drop_other_faces(self.model_id)
        if self.after_pass is not None:
            self.after_pass(catalog)
