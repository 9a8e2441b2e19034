"""Every file kind a personal library holds, decoded to pictures and frames (DESIGN.md: runtimes).

``kinds`` is the one list of supported types: the scanner, the GUI's drops and pastes and the
type filter all read it, so no two parts of the app disagree on what a photo is.
"""
