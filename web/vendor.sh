#!/usr/bin/env bash
# Refreshes web/vendor/ from the npm registry: the versions are those of
# package.json (pinned in package-lock.json). The vendored files are committed,
# so neither building nor running cubed needs npm or the internet.
set -euo pipefail
cd "$(dirname "$0")"
npm install --no-audit --no-fund
cp node_modules/uplot/dist/uPlot.iife.min.js vendor/uPlot.iife.min.js
cp node_modules/uplot/dist/uPlot.min.css vendor/uPlot.min.css
cp node_modules/uplot/LICENSE vendor/uPlot.LICENSE
echo "vendored uplot $(node -p "require('./node_modules/uplot/package.json').version")"
