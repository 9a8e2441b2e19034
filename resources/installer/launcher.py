"""Entry point of the frozen bundle: the ``photofind`` command, as from source.

One hidden first argument, ``--bundle-selftest``, runs the checks of the built artefact
(:mod:`bundle_selftest`) inside the bundle itself; it is not part of the CLI's help because
it exists for the release smoke test only.
"""

import os
import sys

# Before anything can load onnxruntime (the self-test imports it ahead of photofind): its
# telemetry writes a device id and an events database unless this is set when it loads.
# photofind/__init__.py says what and why.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--bundle-selftest":
        import bundle_selftest

        return bundle_selftest.main(sys.argv[2:])
    from photofind.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    # The app finds faces in spawned worker processes (photofind/faces/worker.py): in the
    # frozen bundle each starts as this executable, which must then run the worker.
    import multiprocessing

    multiprocessing.freeze_support()
    sys.exit(main())
