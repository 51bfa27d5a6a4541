#!/usr/bin/env bash
# Make Debian's PostgreSQL server binaries available for the database-source tests.
# The tests start their own throwaway cluster on loopback; nothing runs as a service.
set -u
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's postgresql for the database-source tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "Could not install postgresql; the PostgreSQL source test will be skipped."
else
  echo "postgresql is not installed and this is not root; the PostgreSQL test will be skipped."
fi
exit 0
