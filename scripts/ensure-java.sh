#!/usr/bin/env bash
# The Spark engine tests need Java 17 or newer. Install Debian's JRE when we can, else fail
# with a clear message (the Spark tests would fail anyway).
set -u
if command -v java >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's openjdk-17-jre-headless for the Spark engine tests..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null && exit 0
fi
echo "error: Java 17 is needed for the Spark engine tests and 'java' is not on PATH." >&2
echo "Install it (Debian: apt-get install openjdk-17-jre-headless) and run 'make test' again." >&2
exit 1
