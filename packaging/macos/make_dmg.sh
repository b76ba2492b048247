#!/usr/bin/env bash
# Pack "Slider Studio.app" into a compressed .dmg with an Applications shortcut (drag to install).
#   packaging/macos/make_dmg.sh "build/bundle/Slider Studio.app" dist/SliderStudio-<v>-macos-<arch>.dmg
# Needs macOS (hdiutil). Signing and notarisation are optional: set CODESIGN_IDENTITY (and
# NOTARY_PROFILE, a `xcrun notarytool store-credentials` profile) to do them; without them the
# app is ad-hoc signed and users open it the first time with right-click > Open.
# Not run on the development machine (Linux); CI runs it on macos-latest (installers.yml).
set -euo pipefail
app=$1
out=$2
[ -d "$app" ] || { echo "error: no app bundle at $app" >&2; exit 1; }
identity=${CODESIGN_IDENTITY:--}
if [ "$identity" = "-" ]; then
  codesign --force --deep --sign - "$app"   # ad-hoc: arm64 Macs refuse unsigned code outright
else
  codesign --force --deep --timestamp --options runtime \
    --entitlements "$(dirname "$0")/entitlements.plist" --sign "$identity" "$app"
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
mkdir -p "$(dirname "$out")"
rm -f "$out"
hdiutil create -volname "Slider Studio" -srcfolder "$stage" -fs HFS+ -format UDZO -imagekey zlib-level=9 "$out"
if [ "$identity" != "-" ]; then
  codesign --force --sign "$identity" "$out"
  if [ -n "${NOTARY_PROFILE:-}" ]; then
    xcrun notarytool submit "$out" --keychain-profile "$NOTARY_PROFILE" --wait
    xcrun stapler staple "$out"
  fi
fi
echo "$out"
