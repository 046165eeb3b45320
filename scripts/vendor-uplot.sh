#!/usr/bin/env bash
# Vendors uPlot (the console's charting library) from npm into the console's files, with the
# SHA-256 of each file that a unit test checks, so a hand edit of vendored code fails the
# build. Run by hand to change the version; CI does not run it (the files are committed).
# Usage: scripts/vendor-uplot.sh [VERSION]
set -euo pipefail
VERSION="${1:-1.6.32}"
cd "$(dirname "$0")/.."
DEST="crates/cloudstream-server/console/vendor/uplot"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack "uplot@$VERSION" --silent >/dev/null && tar xzf "uplot-$VERSION.tgz")
rm -rf "$DEST"
mkdir -p "$DEST"
cp "$TMP/package/dist/uPlot.iife.min.js" "$TMP/package/dist/uPlot.min.css" "$TMP/package/LICENSE" "$DEST/"
echo "$VERSION" >"$DEST/VERSION"
(cd "$DEST" && sha256sum uPlot.iife.min.js uPlot.min.css LICENSE VERSION >SHA256SUMS)
echo "uPlot $VERSION vendored into $DEST"
