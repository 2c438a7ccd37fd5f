#!/usr/bin/env bash
# Install what spreadedge needs on Debian 12, then build .venv: safe to run again, and fast then.
#
#   PostgreSQL 15 and its extensions come from Debian; the Python package goes into .venv,
#   built from the system's /usr/bin/python3 (not a pyenv or other python on PATH).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(
  postgresql-15 postgresql-contrib postgresql-15-pgtap pgtap postgresql-15-partman
  postgresql-15-hypopg postgresql-15-cron pgbackrest zstd lz4 make python3-venv wrk
  # why pgbouncer: tests/test_pgbouncer_hunt.py runs the API and the managers behind a real one
  pgbouncer
  # libfaketime: tests/test_clock_step_hunt.py steps a test server's wall clock with it
  libfaketime
  # locales: tests/test_server_locale_hunt.py compiles tr_TR and fr_FR into a private LOCPATH with localedef
  locales
)
# Debian's postgresql-common would create and start a "main" cluster on port 5432 at install;
# spreadedge runs its own embedded cluster instead.
CREATECLUSTER_CONF=/etc/postgresql-common/createcluster.d/spreadedge.conf
VENV=.venv
STAMP=$VENV/.spreadedge-installed

say() { printf '==> %s\n' "$*"; }

require_debian() {
  # why: every package comes from Debian's apt; elsewhere dpkg-query is missing, so every package
  # looked missing and the script ended in "apt-get: command not found" (or, not as root, asked to
  # be run as root to install what it cannot)
  if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    echo "bootstrap: this script installs with apt on Debian 12, and this system has no apt-get or" \
      "dpkg-query; install PostgreSQL 15 with pg_partman, pg_cron, pgTAP, hypopg and pgBackRest yourself," \
      "build the venv (/usr/bin/python3 -m venv $VENV && $VENV/bin/pip install -e '.[dev]')" \
      "and run $VENV/bin/spreadedge directly (the make targets run this script first)" >&2
    exit 1
  fi
}

# "ID VERSION_ID PRETTY_NAME" of /etc/os-release (in a subshell: its variables stay there)
os_release() {
  # shellcheck disable=SC1091
  (. /etc/os-release 2>/dev/null || true; echo "${ID:-unknown} ${VERSION_ID:-unknown} ${PRETTY_NAME:-unknown}")
}

missing_packages() {
  local package
  for package in "${PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null) != installed ]]; then
      echo "$package"
    fi
  done
}

no_main_cluster() {
  if ((EUID == 0)) && [[ $(cat "$CREATECLUSTER_CONF" 2>/dev/null) != "create_main_cluster = false" ]]; then
    say "writing $CREATECLUSTER_CONF (no default 'main' cluster)"
    mkdir -p "$(dirname "$CREATECLUSTER_CONF")"
    echo "create_main_cluster = false" >"$CREATECLUSTER_CONF"
  fi
}

install_packages() {
  local missing
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    say "system packages: all installed"
    return
  fi
  if ((EUID != 0)); then
    echo "bootstrap: missing packages: ${missing[*]}; run this script as root to install them" >&2
    exit 1
  fi
  local os
  os=$(os_release)
  if [[ $os != "debian 12 "* ]]; then
    # why a warning, not a refusal: a derivative may carry the same packages; if not, apt-get's
    # "Unable to locate package" then has its reason next to it
    say "warning: this is not Debian 12 (${os#* * }): the package names are Debian 12's"
  fi
  say "apt-get update"
  apt-get update -q
  say "installing: ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  # why: Debian's pgbouncer package enables and starts a pgbouncer service on port 6432 where
  # systemd runs; the tests start their own, and nothing of spreadedge uses that one
  if [[ " ${missing[*]} " == *" pgbouncer "* && -d /run/systemd/system ]]; then
    say "disabling the pgbouncer service the package started (the tests run their own)"
    systemctl disable --now pgbouncer.service || true
  fi
}

venv_is_usable() {
  [[ -x $VENV/bin/python ]] &&
    grep -qx 'home = /usr/bin' "$VENV/pyvenv.cfg" 2>/dev/null &&
    "$VENV/bin/python" -c 'import sys' 2>/dev/null
}

build_venv() {
  if ! venv_is_usable; then
    say "creating $VENV from /usr/bin/python3"
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV"
  fi
  if [[ pyproject.toml -nt $STAMP ]]; then
    say "installing spreadedge into $VENV (pip install -e '.[dev]')"
    "$VENV/bin/python" -m pip install --quiet -e '.[dev]'
    touch "$STAMP"
  else
    say "$VENV: up to date"
  fi
}

require_debian
no_main_cluster  # before any package install
install_packages
build_venv
say "bootstrap done"
