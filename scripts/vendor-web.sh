#!/usr/bin/env bash
# Vendor the console's front-end libraries from npm into the package (no CDN at run time).
# Idempotent: skipped when the vendored copy matches web/package-lock.json.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/src/citybrain/web/static/vendor"
stamp="$dest/.lock-sha256"
want="$(sha256sum "$root/web/package-lock.json" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$dest/leaflet/leaflet.js" && -f "$dest/echarts/echarts.min.js" ]]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "npm 未安装 npm is not installed: the console needs it once to vendor Leaflet and ECharts (apt-get install npm)" >&2
  exit 1
fi
echo "▸ 前端依赖 vendoring the console's map and chart libraries (npm ci in web/) …"
(cd "$root/web" && npm ci --no-audit --no-fund --loglevel=error)
rm -rf "$dest/leaflet"
mkdir -p "$dest/leaflet"
cp "$root/web/node_modules/leaflet/dist/leaflet.js" "$root/web/node_modules/leaflet/dist/leaflet.css" "$dest/leaflet/"
cp -r "$root/web/node_modules/leaflet/dist/images" "$dest/leaflet/"
cp "$root/web/node_modules/leaflet/LICENSE" "$dest/leaflet/LICENSE" 2>/dev/null || true
# ECharts (Apache-2.0): the KPI screen's charts, the one prebuilt bundle (canvas renderer included).
rm -rf "$dest/echarts"
mkdir -p "$dest/echarts"
cp "$root/web/node_modules/echarts/dist/echarts.min.js" "$dest/echarts/"
cp "$root/web/node_modules/echarts/LICENSE" "$root/web/node_modules/echarts/NOTICE" "$dest/echarts/" 2>/dev/null || true
echo "$want" > "$stamp"
