#!/usr/bin/env bash
# Smoke-test the Linux bundle the way a user runs it: unpack it into a temp folder and run it from
# another folder with a clean environment (tests/packaging/test_installer_bundle.py does the work).
#   packaging/smoke_test.sh [dist/SliderStudio-<version>-linux-<arch>.tar.gz]
# Exits non-zero on any failure, including a missing bundle. The venv's pytest only drives the
# checks; every Slider Studio command runs from the unpacked bundle.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bundle=${1:-$(ls -t "$root"/dist/SliderStudio-*-linux-*.tar.gz 2>/dev/null | head -n 1 || true)}
[ $# -gt 0 ] && shift
if [ -z "$bundle" ] || [ ! -f "$bundle" ]; then
  echo "error: no bundle found (run 'make installer' first)" >&2
  exit 1
fi
bundle=$(cd "$(dirname "$bundle")" && pwd)/$(basename "$bundle")
echo "smoke-testing $bundle ($(du -h "$bundle" | cut -f1))"
cd "$root"
# -m slow selects the bundle tests (they are marked slow); -s prints the timings.
env -u PYTHONPATH SLIDERSTUDIO_BUNDLE="$bundle" SLIDERSTUDIO_BUNDLE_REQUIRED=1 \
  "$root/.venv/bin/python" -m pytest -q -s -m slow -p no:cacheprovider \
  tests/packaging/test_installer_bundle.py "$@"
