#!/usr/bin/env bash
# Runs fuzz targets one after another (the machine's cores are shared):
#   Fuzz/run.sh [-merge] TARGET... [-- libFuzzer flags]
# Each target starts from its committed corpus (Fuzz/corpus/T) and seeds (Fuzz/seeds/T), with the
# format's tokens (Fuzz/dict/T.dict) for the mutator; new inputs go
# to $FUZZ_BUILD/work/T, crashes to $FUZZ_BUILD/artifacts/T/. Without flags a target runs
# FUZZ_SECONDS (default 30) seconds. With -merge, the committed corpus is then replaced by the
# smallest set of corpus, seed and new inputs that keeps all their coverage features
# (libFuzzer -set_cover_merge=1, the set-cover form of -merge=1).
# Exits non-zero when any target crashed, leaked, timed out or ran out of memory.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${FUZZ_BUILD:-.build-fuzz}
merge=0; targets=(); flags=()
while [ $# -gt 0 ]; do
    case "$1" in
        -merge) merge=1 ;;
        --) shift; flags=("$@"); break ;;
        *) targets+=("$1") ;;
    esac
    shift
done
[ ${#targets[@]} -gt 0 ] || targets=(png jpeg wav idx safetensors json)
[ ${#flags[@]} -gt 0 ] || flags=(-max_total_time="${FUZZ_SECONDS:-30}")
status=0
for t in "${targets[@]}"; do
    binary="$OUT/fuzz-$t"
    [ -x "$binary" ] || { echo "fuzz: $binary is missing; run make fuzz-build" >&2; exit 2; }
    mkdir -p "$OUT/work/$t" "$OUT/artifacts/$t" "Fuzz/corpus/$t"
    echo "fuzz: $t ${flags[*]}"
    # Images may be a few KB; the other formats' structure fits in 4 KB.
    case "$t" in png|jpeg) max_len=8192 ;; *) max_len=4096 ;; esac
    dict=(); [ -f "Fuzz/dict/$t.dict" ] && dict=(-dict="Fuzz/dict/$t.dict")
    "$binary" -max_len=$max_len -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
        -artifact_prefix="$OUT/artifacts/$t/" "${flags[@]}" "$OUT/work/$t" "Fuzz/corpus/$t" "Fuzz/seeds/$t" \
        > "$OUT/$t.log" 2>&1
    rc=$?
    grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)|Done [0-9]+ runs|ERROR|SUMMARY" "$OUT/$t.log" | sed "s/^/fuzz: $t: /"
    if [ $rc -ne 0 ]; then echo "fuzz: $t FAILED (rc $rc); see $OUT/$t.log and $OUT/artifacts/$t/" >&2; status=1; continue; fi
    if [ $merge = 1 ]; then
        rm -rf "$OUT/merged/$t"; mkdir -p "$OUT/merged/$t"
        "$binary" -set_cover_merge=1 -max_len=$max_len "$OUT/merged/$t" "Fuzz/corpus/$t" "Fuzz/seeds/$t" "$OUT/work/$t" > "$OUT/$t.merge.log" 2>&1 \
            && rm -rf "Fuzz/corpus/$t" && mv "$OUT/merged/$t" "Fuzz/corpus/$t" \
            && echo "fuzz: $t: committed corpus now $(ls "Fuzz/corpus/$t" | wc -l) files, $(du -sk "Fuzz/corpus/$t" | cut -f1) KB"
    fi
done
exit $status
