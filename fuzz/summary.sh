#!/bin/sh
# Executions and seconds per target from logs/<target>.log (all runs appended there): libFuzzer's final
# stats for plain runs, the last "#N: … time: Ts" line of each fork-mode run.
cd "$(dirname "$0")"
printf '| target | runs | executions | seconds | OOMs/timeouts/crashes |\n|---|---|---|---|---|\n'
for f in logs/*.log; do
    t=$(basename "$f" .log)
    awk -v t="$t" '
        /^=== / { if (n) flush(); n++; ex = 0; secs = 0; bad = "0/0/0"; plain_ex = 0; rate = 0 }
        /^#[0-9]+: cov:/ { ex = substr($1, 2) + 0; for (i = 1; i <= NF; i++) { if ($i == "time:") secs = $(i+1) + 0; if ($i == "oom/timeout/crash:") bad = $(i+1) } }
        /stat::number_of_executed_units:/ { plain_ex = $2 }
        /stat::average_exec_per_sec:/ { rate = $2 }
        function flush() { if (plain_ex > 0) { ex = plain_ex; if (rate > 0) secs = int(plain_ex / rate) } E += ex; S += secs; B = B " " bad }
        END { if (n) flush(); printf "| %s | %d | %d | %d | %s |\n", t, n, E, S, B }
    ' "$f"
done
