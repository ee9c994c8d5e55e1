#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS]: builds the cargo-fuzz targets in fuzz/ and runs each for SECONDS
# (default 60), one after the other, then prints a Markdown table (executions, libFuzzer's
# coverage and features, crashes) for RELIABILITY.md. A crash stops the script with the input
# saved under fuzz/artifacts/<target>/.
#
# Only a stable Rust toolchain is assumed: cargo-fuzz passes nightly-only -Z flags to rustc, which
# RUSTC_BOOTSTRAP=1 lets a stable rustc accept; "-s none" builds without a sanitizer (AddressSanitizer
# needs -Zsanitizer and a runtime the stable toolchain does not ship). Safe Rust gets no memory
# errors for ASan to find; what the runs look for is panics, overflows (debug assertions are on),
# hangs and the targets' own assertions. Needs: cargo install cargo-fuzz, a C++ compiler (libFuzzer).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
PER_TARGET=${1:-60}
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}/fuzz
FLAGS=(-s none --debug-assertions)

cargo fuzz build "${FLAGS[@]}" >&2

# Seeds: the repository's example configurations (behind selector byte 0: "as is"), and a few
# request heads, answers and paths, (re)written into each corpus.
seed() { mkdir -p "corpus/$1"; printf '%b' "$3" > "corpus/$1/seed-$2"; }
mkdir -p corpus/config_load
n=0
for file in ../examples/*.yaml ../examples/*/*.yaml ../k8s/*.yaml; do
    [[ -f $file ]] || continue
    { printf '\x00'; cat "$file"; } > "corpus/config_load/example-$((n++))"
done
seed route_match 1 'GET\xff/svc/index?q=1\xffapi.test:8080\xffx-canary\xffyes'
seed route_match 2 'POST\xff/items/42/x\xffa.example.com\xffx-user\xffbob'
seed route_match 3 'GET\xff/api?x=1\xff\xff'
seed hop_by_hop 1 'connection\xffkeep-alive, x-private\xffx-private\xff1\xfftransfer-encoding\xffchunked\xffx-keep\xffyes'
seed response_diff 1 '\x00\xc8content-type\xffapplication/json\xfe{"a":[1,2,{"b":"c"}]}\xfd\xfd\x00\xc8content-type\xffapplication/json\xfe{"a":[1,3]}'
seed response_diff 2 '\x00\xc8set-cookie\xffs=1\xfeline one\nline two\xfd\xfd\x01\xf4set-cookie\xffs=2\xfeline one\nline 2'
seed response_diff 3 '\x00\xc8content-encoding\xffgzip\xfenot gzip\xfd\xfd\x00\xc8\xfe'
seed path_normalize 1 '\x00/a/./b/../c?x=/../y'
seed path_normalize 2 '\x05/a/%2e%2E/%2F//b\\c/..'
seed path_normalize 3 '\x01//api/%41%7e/../..//x'

rows=()
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    log=$(mktemp)
    echo "==> $target for ${PER_TARGET}s" >&2
    if ! cargo fuzz run "${FLAGS[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz: $target failed (input saved under fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
    execs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | awk '{print $2}')
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")
    corpus=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$done_line")
    rate=$(grep -oE 'exec/s: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    rows+=("| \`$target\` | ${PER_TARGET} s | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${corpus:-?} | 0 |")
    rm -f "$log"
done

echo "| target | time | executions | exec/s | coverage (cov) | features (ft) | corpus | crashes |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
