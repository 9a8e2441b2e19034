"""Entry point of the frozen bundle: the ``photofind`` command, as from source.

One hidden first argument, ``--bundle-selftest``, runs the checks of the built artefact
(:mod:`bundle_selftest`) inside the bundle itself; it is not part of the CLI's help because
it exists for the release smoke test only.
"""

import sys


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--bundle-selftest":
        import bundle_selftest

        return bundle_selftest.main(sys.argv[2:])
    from photofind.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
