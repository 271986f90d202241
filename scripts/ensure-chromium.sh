#!/usr/bin/env bash
# The console's browser tests drive Debian's chromium with Playwright.  Installs it from
# Debian's packages when missing (root, or passwordless sudo).
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "chromium 未安装 /usr/bin/chromium is missing and we are not root: apt-get install chromium" >&2
    exit 1
  fi
fi
echo "▸ 安装浏览器 installing Debian's chromium for the console tests (apt-get) …"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk >/dev/null
/usr/bin/chromium --version
