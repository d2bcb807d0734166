#!/usr/bin/env bash
# What `make test` needs beyond the venv: Java and Maven (the local Kafka broker), Prometheus
# with promtool and amtool (alert rules and the end-to-end scrape), docker-compose (syntax
# check of the compose file), PostgreSQL (the alert store's tests), Chromium and ChromeDriver
# (the console's browser test). All from Debian's packages.
#
#   scripts/test-deps.sh check     say what is missing, exit 1 if anything is
#   scripts/test-deps.sh install   install what is missing with apt-get (needs root)
set -euo pipefail

# command -> Debian package
declare -A NEED=(
  [java]=openjdk-17-jre-headless
  [mvn]=maven
  [prometheus]=prometheus
  [promtool]=prometheus
  [amtool]=prometheus-alertmanager
  [docker-compose]=docker-compose
  [chromium]=chromium
  [chromedriver]=chromium-driver
)

missing_packages() {
  local pkgs=()
  for cmd in "${!NEED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || pkgs+=("${NEED[$cmd]}")
  done
  # the PostgreSQL server binaries are not on PATH on Debian
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || pkgs+=(postgresql)
  [ ${#pkgs[@]} -eq 0 ] || printf '%s\n' "${pkgs[@]}" | sort -u
}

case "${1:-check}" in
  check)
    missing=$(missing_packages)
    if [ -n "$missing" ]; then
      echo "make test needs these Debian packages, which are not installed:" >&2
      echo "$missing" | sed 's/^/  /' >&2
      echo "install them with: sudo scripts/test-deps.sh install   (or: sudo apt-get install $(echo $missing))" >&2
      exit 1
    fi
    ;;
  install)
    missing=$(missing_packages)
    if [ -n "$missing" ]; then
      if [ "$(id -u)" -ne 0 ]; then
        echo "installing $(echo $missing) needs root: sudo $0 install" >&2
        exit 1
      fi
      apt-get update -qq
      # shellcheck disable=SC2086
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    fi
    ;;
  *)
    echo "usage: $0 check|install" >&2
    exit 2
    ;;
esac
