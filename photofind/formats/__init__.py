"""Every file kind a personal library holds, decoded to pictures and frames (DESIGN.md: runtimes).

``kinds`` is the one list of supported types: the scanner, the GUI's drops and pastes and the
type filter all read it, so no two parts of the app disagree on what a photo is.

Stills: :func:`photofind.formats.decode.decode` is the one function every reader of pixels
calls (indexing, faces, thumbnails, the preview, copy image): Pillow and its plugins
(``stills``: HEIC/HEIF, AVIF, JPEG XL, PSD, TIFF, ...), camera RAW through LibRaw (``raw``),
colour profiles to sRGB (``colour``, ``icc``); ``frames`` samples animated GIF/WebP/APNG.
"""
