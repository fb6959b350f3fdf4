#!/usr/bin/env bash
# `make demo`: the whole loop on one machine, on the embedded default.
#   1. a private local stack (Apache Kafka broker + redis-server) on its own ports;
#   2. delayed-feedback events (known click model) produced to Kafka as Avro;
#   3. the streaming sample join (`run --engine local`: Kafka in, Redis checkpoints, samples out);
#   4. the samples topic dumped to JSONL, split by time, a model fitted with the PU loss and evaluated.
# Everything lands in .demo/; the stack is stopped at the end (DEMO_KEEP_STACK=1 leaves it up).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=.venv/jobs/bin/python
TRAINER=.venv/trainer/bin/python
DIR=${DEMO_DIR:-.demo}
IMPRESSIONS=${DEMO_IMPRESSIONS:-30000}
KAFKA_PORT=${DEMO_KAFKA_PORT:-19192}
REDIS_PORT=${DEMO_REDIS_PORT:-16479}
BOOTSTRAP=127.0.0.1:$KAFKA_PORT
REDIS=redis://127.0.0.1:$REDIS_PORT/0

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
rm -rf "$DIR"
mkdir -p "$DIR"

step "1/5 local stack on $BOOTSTRAP and $REDIS"
$JOBS -m infra.local up --state-dir "$DIR/stack" --kafka-port "$KAFKA_PORT" --redis-port "$REDIS_PORT"
[ "${DEMO_KEEP_STACK:-0}" = 1 ] || trap '$JOBS -m infra.local down --state-dir "$DIR/stack"' EXIT

step "2/5 generating $IMPRESSIONS impressions with delayed clicks into Kafka (Avro)"
$JOBS -m jobs.generate --bootstrap-servers "$BOOTSTRAP" --impressions "$IMPRESSIONS" --speedup 0 \
  --truth "$DIR/truth.jsonl" --seed 7

step "3/5 streaming sample join: python -m jobs.sample_join run --engine local"
$JOBS -m jobs.sample_join run --engine local --bootstrap-servers "$BOOTSTRAP" --redis-url "$REDIS" \
  --exit-when-idle 3s 2> "$DIR/join.log"
$JOBS - "$DIR/join.log" <<'PY'
import json, sys
summary = [json.loads(l) for l in open(sys.argv[1]) if '"embedded runtime stopped"' in l][-1]
print(f"events in {summary['events_in']}, samples out {summary['samples_out']} {summary['by_attribution']}, "
      f"unmatched {summary['unmatched']}, dead-lettered {summary['deadletter']}, ignored labels {summary['ignored']}, "
      f"state {summary['state_bytes_per_pending_impression']:.0f} B/pending impression")
PY

step "4/5 samples topic -> $DIR/samples.jsonl, split by impression time (80% train, 20% holdout)"
$JOBS -m infra.cat samples.click --bootstrap-servers "$BOOTSTRAP" --out "$DIR/samples.jsonl"
$JOBS - "$DIR" <<'PY'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
rows = sorted((json.loads(l) for l in open(d / "samples.jsonl")), key=lambda s: s["impression_time_ms"])
cut = rows[int(len(rows) * 0.8)]["impression_time_ms"]
for name, part in (("train", [r for r in rows if r["impression_time_ms"] < cut]),
                   ("holdout", [r for r in rows if r["impression_time_ms"] >= cut])):
    (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    print(f"{name}: {len(part)} samples")
PY

step "5/5 trainer: fit (PU loss) -> export -> evaluate on the holdout"
$TRAINER -m trainer fit --samples "$DIR/train.jsonl" --loss pu --export "$DIR/model" --seed 7
$TRAINER -m trainer evaluate --model "$DIR/model" --samples "$DIR/holdout.jsonl" --json
echo
echo "demo done: samples, model and logs are in $DIR/"
