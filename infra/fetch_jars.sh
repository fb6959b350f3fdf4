#!/usr/bin/env bash
# JVM artifacts into .jvm/<name>/ (ignored), one per folder of infra/jvm/ with a pom.xml:
#   kafka: the local Apache Kafka broker with its runtime dependencies and a log4j2 backend;
#   flink: the Flink Kafka connector;
#   udf:   the project's Flink SQL function (built from infra/jvm/udf/src, needs a JDK).
# Jars come from Maven Central (mvn dependency:copy-dependencies). Idempotent and offline once
# fetched: a folder is redone only when its pom (or sources) changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v java >/dev/null 2>&1; then
  echo "fetch_jars: java is not installed; install Java 17 (e.g. 'apt-get install openjdk-17-jdk-headless')." >&2
  exit 1
fi

for pom in infra/jvm/*/pom.xml; do
  module=$(dirname "$pom")
  name=$(basename "$module")
  dest=.jvm/$name
  want=$(find "$module" -type f | sort | xargs cat | sha256sum | cut -c1-16)
  if [ -f "$dest/.stamp" ] && [ "$(cat "$dest/.stamp")" = "$want" ] && ls "$dest"/*.jar >/dev/null 2>&1; then
    echo "fetch_jars: $dest is up to date"
    continue
  fi
  if ! command -v mvn >/dev/null 2>&1; then
    echo "fetch_jars: mvn is not installed; install Maven (e.g. 'apt-get install maven') to fetch $dest." >&2
    exit 1
  fi
  mkdir -p .jvm
  rm -rf "$dest.tmp"
  if [ -d "$module/src" ]; then
    if ! command -v javac >/dev/null 2>&1; then
      echo "fetch_jars: javac is not installed; install a JDK (e.g. 'apt-get install openjdk-17-jdk-headless') to build $dest." >&2
      exit 1
    fi
    echo "fetch_jars: building $dest ($module)"
    goal=(package)
  else
    echo "fetch_jars: fetching $dest from Maven Central ($pom)"
    goal=(dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$PWD/$dest.tmp")
  fi
  if ! mvn -q -B -f "$pom" "${goal[@]}" >"$dest.log" 2>&1; then
    echo "fetch_jars: mvn failed on $pom (see $dest.log)" >&2
    rm -rf "$dest.tmp"
    exit 1
  fi
  if [ -d "$module/src" ]; then
    mkdir -p "$dest.tmp" && cp ".jvm/$name-build/"*.jar "$dest.tmp/" && rm -rf ".jvm/$name-build"
  fi
  rm -rf "$dest" "$dest.log"
  mv "$dest.tmp" "$dest"
  echo "$want" > "$dest/.stamp"
done
