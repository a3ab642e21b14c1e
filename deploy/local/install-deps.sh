#!/usr/bin/env bash
# Installs what the local stack needs: PostgreSQL server binaries, kcat, and Apache Kafka's jars.
# Idempotent: a second run only checks. Prints each step on stderr; on failure prints one
# "install-deps: ..." line and exits non-zero.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
pom="$here/kafka-pom.xml"
cache="${KB_INGEST_CACHE:-$repo/.cache}"

say() { echo "install-deps: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

apt_updated=0
apt_install() {
  # Installs Debian packages as root; the package index is refreshed at most once per run.
  if [ "$(id -u)" -ne 0 ]; then
    return 1
  fi
  if [ "$apt_updated" -eq 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 \
    || die "apt-get install $* failed"
}

postgres_bin_dir() {
  # Prints the directory holding initdb, pg_ctl and postgres: PATH first, then the newest
  # /usr/lib/postgresql/<major>/bin.
  local dir
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null && command -v postgres >/dev/null; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return 0
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -n -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

ensure_postgres() {
  local dir
  if dir="$(postgres_bin_dir)"; then
    say "postgres: found server binaries in $dir"
    return 0
  fi
  apt_install postgresql \
    || die "PostgreSQL server binaries not found: install Debian's postgresql package (apt-get install postgresql)"
  dir="$(postgres_bin_dir)" || die "postgresql installed but initdb/pg_ctl/postgres not found"
  say "postgres: installed server binaries in $dir"
}

ensure_kcat() {
  if [ -x /usr/bin/kcat ] || command -v kcat >/dev/null; then
    say "kcat: found $(command -v kcat || echo /usr/bin/kcat)"
    return 0
  fi
  apt_install kcat || die "kcat not found: install Debian's kcat package (apt-get install kcat)"
  say "kcat: installed"
}

ensure_java_and_maven() {
  # Maven fetches the Kafka jars and Java runs them; a fresh Debian machine may have neither.
  local missing=()
  command -v java >/dev/null || missing+=(default-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  if [ "${#missing[@]}" -eq 0 ]; then
    say "java/maven: found"
    return 0
  fi
  apt_install "${missing[@]}" \
    || die "java or mvn not found: install Debian's default-jre-headless and maven packages"
}

kafka_version() {
  sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -n 1
}

ensure_kafka_jars() {
  local version dest tmp
  [ -f "$pom" ] || die "$pom not found"
  version="$(kafka_version)"
  [ -n "$version" ] || die "no <kafka.version> in $pom"
  dest="$cache/kafka/$version"
  if [ -f "$dest/.complete" ]; then
    say "kafka $version: jars cached in $dest"
    return 0
  fi
  ensure_java_and_maven
  say "kafka $version: fetching jars with maven into $dest"
  mkdir -p "$cache/kafka"
  # Fetch into a private folder and rename it into place, so a concurrent or interrupted run
  # never leaves a half-filled cache that looks complete.
  tmp="$(mktemp -d "$cache/kafka/.fetch-$version.XXXXXX")"
  if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$tmp" >"$tmp/.mvn.log" 2>&1; then
    tail -n 20 "$tmp/.mvn.log" >&2
    rm -rf "$tmp"
    die "maven could not fetch Apache Kafka $version jars (see the lines above)"
  fi
  rm -f "$tmp/.mvn.log"
  touch "$tmp/.complete"
  if [ -d "$dest" ] && [ ! -f "$dest/.complete" ]; then
    rm -rf "$dest" # left by an older, interrupted layout
  fi
  if ! mv -T "$tmp" "$dest" 2>/dev/null; then
    rm -rf "$tmp"
    [ -f "$dest/.complete" ] || die "could not move the Kafka jars into $dest"
  fi
  say "kafka $version: $(ls "$dest" | wc -l) jars in $dest"
}

ensure_postgres
ensure_kcat
ensure_kafka_jars
say "done"
