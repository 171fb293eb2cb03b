#!/usr/bin/env bash
# One line per run directory of perf/prealloc-measure.sh: throughput, p99s, io-wq share of
# the broker's CPU samples, context switches and CPU time of the broker.
for d in "$@"; do for n in produce e2e; do
  [ -f "$d/$n.txt" ] || continue
  tp=$(awk '$5=="produce"{print $6" rec/s "$7" MB/s"}' "$d/$n.txt" | head -1)
  p99=$(awk '$5=="produce"{print $10}' "$d/$n.txt" | head -1)
  e2e=$(awk '$5=="e2e"{print $10}' "$d/$n.txt")
  iou=$(awk '$2 ~ /^iou-wrk/ {gsub("%","",$1); s+=$1} END{printf "%.1f", s}' "$d/$n.comm.txt")
  cs=$(awk '/context-switches/{print $1}' "$d/$n.stat.txt"); cpu=$(awk '/cpu-clock/{print $1}' "$d/$n.stat.txt")
  echo "| $(basename "$d") | $n | $tp | ${p99} | ${e2e:--} | ${iou}% | $cs | $cpu |"
done; done
