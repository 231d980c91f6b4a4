#!/bin/sh
# Runs every fuzz target in turn, one process at a time and niced (the machine is shared), for
# $1 seconds each (default 900), appending libFuzzer's output to logs/<target>.log. Fork mode with one
# job keeps a run going past a crash, a timeout or an out-of-memory (each is saved in artifacts/<target>/).
set -eu
cd "$(dirname "$0")"
secs=${1:-900}
mkdir -p logs corpus
for t in ${TARGETS:-gguf config tokenizer chat model}; do
    mkdir -p "corpus/$t"
    echo "=== $t $(date -u +%FT%TZ) ${secs}s" >> "logs/$t.log"
    nice -n 19 cargo +nightly fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- \
        -rss_limit_mb=2048 -timeout=10 -max_total_time="$secs" -print_final_stats=1 \
        -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 >> "logs/$t.log" 2>&1 || true
done
