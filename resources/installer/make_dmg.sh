#!/usr/bin/env bash
# macOS release: photofind.app (PyInstaller BUNDLE) inside dist/photofind-VERSION-macos-ARCH.dmg.
#
# On a Mac (macOS 11+, Python 3.11+ from python.org or Homebrew, Xcode command-line tools):
#     python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]'
#     resources/installer/make_dmg.sh [--model DIR]
# Optional signing and notarisation (needed for Gatekeeper on other Macs):
#     SIGN_IDENTITY="Developer ID Application: NAME (TEAMID)" NOTARY_PROFILE=photofind \
#         resources/installer/make_dmg.sh
# (NOTARY_PROFILE: made once with `xcrun notarytool store-credentials photofind`.)
# Written for a release machine; not run in this project's CI (it has no Mac).
set -euo pipefail
cd "$(dirname "$0")/../.."

[[ "$(uname)" == Darwin ]] || { echo "make_dmg.sh: run on macOS" >&2; exit 2; }

# The spec's BUNDLE step makes dist/photofind.app beside dist/photofind/ (macOS has
# onnxruntime, not onnxruntime-gpu: the CoreML/CPU providers, no CUDA).
python resources/installer/build.py "$@"

version=$(python -c 'import re,pathlib;print(re.search(r"__version__ = \"(.+)\"",pathlib.Path("photofind/__init__.py").read_text()).group(1))')
arch=$(uname -m)
app=dist/photofind.app
dmg="dist/photofind-${version}-macos-${arch}.dmg"
[[ -d "$app" ]] || { echo "make_dmg.sh: $app was not built" >&2; exit 1; }

if [[ -n "${SIGN_IDENTITY:-}" ]]; then
    # Hardened runtime, inside-out signing of every nested library, as notarisation requires.
    codesign --force --deep --options runtime --timestamp --sign "$SIGN_IDENTITY" "$app"
    codesign --verify --strict --verbose=2 "$app"
fi

# A plain drag-to-Applications image: the app and a link to /Applications.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
rm -f "$dmg"
hdiutil create -volname "photofind $version" -srcfolder "$stage" -fs HFS+ \
    -format UDZO -imagekey zlib-level=9 "$dmg"
# (create-dmg, `brew install create-dmg`, gives a window with a background and icon
#  positions instead: create-dmg --volname photofind --app-drop-link 450 120 "$dmg" "$stage")

if [[ -n "${SIGN_IDENTITY:-}" ]]; then
    codesign --force --timestamp --sign "$SIGN_IDENTITY" "$dmg"
fi
if [[ -n "${NOTARY_PROFILE:-}" ]]; then
    xcrun notarytool submit "$dmg" --keychain-profile "$NOTARY_PROFILE" --wait
    xcrun stapler staple "$dmg"
fi
echo "$dmg"
