#!/usr/bin/env bash
# The machine's limits in this session: sequential direct write and read of the disk that holds
# the broker's data (fio, 1 MiB blocks, O_DIRECT) and TCP over loopback (iperf3, one stream).
# Needs: apt-get install fio iperf3. Writes perf/results/machine.txt.
source "$(dirname "$0")/common.sh"
mkdir -p "$OUT" "$DATA"
SIZE="${SIZE:-2G}"
{
    echo "== machine"
    echo "nproc: $(nproc)"
    lscpu | grep -E '^Model name' || true
    echo "kernel: $(uname -r)"
    df -h "$DATA" | tail -1
    echo "== fio sequential write, direct, 1 MiB blocks, iodepth 16"
    fio --name=seqwrite --filename="$DATA/fio.test" --rw=write --bs=1M --size="$SIZE" \
        --direct=1 --ioengine=io_uring --iodepth=16 --end_fsync=1 --output-format=terse \
        | awk -F';' '{printf "write: %.0f MB/s\n", $48*1024/1e6}'
    echo "== fio sequential read, direct, 1 MiB blocks, iodepth 16"
    fio --name=seqread --filename="$DATA/fio.test" --rw=read --bs=1M --size="$SIZE" \
        --direct=1 --ioengine=io_uring --iodepth=16 --output-format=terse \
        | awk -F';' '{printf "read: %.0f MB/s\n", $7*1024/1e6}'
    rm -f "$DATA/fio.test"
    echo "== iperf3 loopback, 1 stream, 10 s"
    iperf3 -s -1 -p 15201 >/dev/null 2>&1 &
    sleep 0.5
    iperf3 -c 127.0.0.1 -p 15201 -t 10 -J | python3 -c \
        'import json,sys; r=json.load(sys.stdin)["end"]["sum_received"]; print("loopback: %.0f MB/s" % (r["bits_per_second"]/8e6))'
} | tee "$OUT/machine.txt"
