#!/usr/bin/env bash
# Create .venv and install citybrain with its test extras.  Re-runs pip only when
# pyproject.toml changed since the last successful install (stamp file).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] 创建虚拟环境 creating virtualenv .venv ($($PY --version))"
  "$PY" -m venv .venv
fi
stamp=.venv/.citybrain-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[bootstrap] 安装依赖 installing packages (pip install -e .[test,bench]) …"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test,bench]'
  echo "$want" > "$stamp"
  echo "[bootstrap] 完成 done"
fi
bash scripts/vendor-web.sh   # the console's map library, from npm (no CDN at run time)
