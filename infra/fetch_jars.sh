#!/usr/bin/env bash
# JVM artifacts from Maven Central into .jvm/<name>/ (ignored): the local Apache Kafka broker
# (infra/jvm/kafka/pom.xml) and the Flink Kafka connector (infra/jvm/flink/pom.xml).
# Idempotent and offline once fetched: a folder is refetched only when its pom changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v java >/dev/null 2>&1; then
  echo "fetch_jars: java is not installed; install Java 17 (e.g. 'apt-get install openjdk-17-jre-headless')." >&2
  exit 1
fi

for pom in infra/jvm/*/pom.xml; do
  name=$(basename "$(dirname "$pom")")
  dest=.jvm/$name
  want=$(sha256sum "$pom" | cut -c1-16)
  if [ -f "$dest/.pom-sha" ] && [ "$(cat "$dest/.pom-sha")" = "$want" ] && ls "$dest"/*.jar >/dev/null 2>&1; then
    echo "fetch_jars: $dest is up to date"
    continue
  fi
  if ! command -v mvn >/dev/null 2>&1; then
    echo "fetch_jars: mvn is not installed; install Maven (e.g. 'apt-get install maven') to fetch $dest." >&2
    exit 1
  fi
  echo "fetch_jars: fetching $dest from Maven Central ($pom)"
  mkdir -p .jvm
  rm -rf "$dest.tmp"
  if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$PWD/$dest.tmp" >"$dest.log" 2>&1; then
    echo "fetch_jars: mvn could not fetch $pom (see $dest.log)" >&2
    rm -rf "$dest.tmp"
    exit 1
  fi
  rm -rf "$dest" "$dest.log"
  mv "$dest.tmp" "$dest"
  echo "$want" > "$dest/.pom-sha"
done
