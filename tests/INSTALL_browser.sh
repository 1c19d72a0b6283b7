#!/usr/bin/env bash
# Install Debian's Chromium and its matching chromedriver, used only by the browser test of
# `xdisc label` (tests/test_labeling.py drives the labelling page headless through selenium).
#
# Why Debian's packages: the machines reach package registries only, so neither selenium-manager
# nor `playwright install` can download a browser; chromium + chromium-driver from apt come as a
# matched pair (same version), which selenium then uses through Service("/usr/bin/chromedriver").
#
# Usage:  bash tests/INSTALL_browser.sh          (needs root for apt-get)
# Idempotent: exits 0 early when /usr/bin/chromium and /usr/bin/chromedriver exist; runs
# `apt-get update` only when the package lists do not know chromium or an install from them fails.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver
PACKAGES=(chromium chromium-driver)

check() {
    # 2>/dev/null: bookworm's launcher script prints a harmless "[: ... unexpected operator"
    "$CHROMIUM" --version 2>/dev/null && "$DRIVER" --version
}

if [ -x "$CHROMIUM" ] && [ -x "$DRIVER" ]; then
    echo "browser: already installed: $(check | tr '\n' ' ')"
    exit 0
fi

command -v apt-get >/dev/null || { echo "browser: apt-get not found (Debian/Ubuntu only); install chromium and chromedriver yourself" >&2; exit 1; }
if [ "$(id -u)" -ne 0 ]; then
    echo "browser: apt-get needs root (run: sudo bash $0)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

known() {
    local p policy
    for p in "${PACKAGES[@]}"; do
        policy="$(apt-cache policy "$p" 2>/dev/null)"  # not piped into grep -q: SIGPIPE + pipefail
        [[ "$policy" == *"Candidate: "[0-9]* ]] || return 1
    done
}

install() {
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
}

updated=no
if ! known; then
    echo "browser: package lists do not know ${PACKAGES[*]}: apt-get update"
    apt-get update -q
    updated=yes
fi
echo "browser: apt-get install ${PACKAGES[*]}"
if ! install; then
    [ "$updated" = yes ] && exit 1
    echo "browser: install failed with the current package lists: apt-get update and retry"
    apt-get update -q
    install
fi

check
echo "browser: installed ${PACKAGES[*]}"
