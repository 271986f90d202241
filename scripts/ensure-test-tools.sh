#!/usr/bin/env bash
# Test tools from Debian's packages, installed when missing (root, or passwordless sudo):
#   chromium   — the console's browser tests (driven by Playwright)
#   prometheus — a real Prometheus for the dashboard/alert queries, and promtool for the
#                rule unit tests
#   prometheus-alertmanager — amtool, which checks deploy/alertmanager/alertmanager.yml
set -euo pipefail
need=()
[[ -x /usr/bin/chromium ]] || need+=(chromium fonts-noto-cjk)
[[ -x /usr/bin/prometheus && -x /usr/bin/promtool ]] || need+=(prometheus)
[[ -x /usr/bin/amtool ]] || need+=(prometheus-alertmanager)
if [[ ${#need[@]} -eq 0 ]]; then
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "测试工具缺失 missing test tools (${need[*]}) and we are not root: apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
echo "▸ 安装测试工具 installing ${need[*]} from Debian's packages (apt-get) …"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian package may start a Prometheus service where an init system runs; the tests
# start their own on free ports, so a running one does no harm.
/usr/bin/chromium --version
/usr/bin/prometheus --version 2>&1 | head -1
/usr/bin/amtool --version 2>&1 | head -1
