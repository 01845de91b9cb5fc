#!/usr/bin/env bash
# The dashboard in a real headless Chromium against a live local cluster made by `rayctl up`
# (scripts/browser_check.py says what it checks). Installs Debian's chromium (and
# chromium-driver, for anyone driving it with WebDriver) when missing and this runs as root;
# exits 0 with the reason when no browser can be had. Screenshots: $ARTIFACTS
# (default /tmp/rayctl-browser).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
browser=""
for candidate in chromium chromium-browser google-chrome; do
  if command -v "$candidate" >/dev/null 2>&1; then browser=$(command -v "$candidate"); break; fi
done
if [ -z "$browser" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-browser: installing chromium and chromium-driver (apt)"
    if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
          chromium chromium-driver >/dev/null); then
      echo "test-browser: SKIPPED: apt could not install chromium (no network to the mirror?)"
      exit 0
    fi
    browser=$(command -v chromium || true)
  fi
fi
if [ -z "$browser" ]; then
  echo "test-browser: SKIPPED: no Chromium here and it cannot be installed (needs root and apt)"
  exit 0
fi
echo "test-browser: using $browser ($("$browser" --version 2>/dev/null || echo '?'))"
timeout 600 python scripts/browser_check.py "$browser"
