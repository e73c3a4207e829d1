#!/usr/bin/env bash
# Installs Debian's Chromium, which the console's browser tests (tests/console) drive with
# Playwright; no browser is ever downloaded by Playwright itself. Idempotent: does nothing when
# /usr/bin/chromium is present. Debian packages only, from the machine's configured apt sources.
# Without root it cannot install: it says so and fails when CI=true (the browser tests are
# mandatory there), else it only warns (the browser tests then skip).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "install-chromium: present ($(/usr/bin/chromium --version 2>/dev/null || echo chromium))"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-chromium: /usr/bin/chromium is missing and this is not root: cannot install" \
       "(run 'sudo scripts/install-chromium.sh'; the browser tests skip meanwhile)" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 0
fi

echo "install-chromium: installing Debian's chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium
echo "install-chromium: done ($(/usr/bin/chromium --version))"
