#!/usr/bin/env bash
# Renders a `qforge compare` report page in headless Chromium to a PNG, to look at it as a
# reader would: scripts/render_report.sh DIR/report.html [OUT.png] (default: beside the page).
# Needs Debian's chromium (sudo apt-get install chromium); nothing is fetched from the network.
set -euo pipefail
html=$(realpath "$1")
png=${2:-${html%.html}.png}
command -v chromium >/dev/null || { echo "render_report.sh: chromium is not installed (apt-get install chromium)" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size=1200,${HEIGHT:-2400} --screenshot="$png" "file://$html" 2>/dev/null
echo "wrote $png"
