#!/usr/bin/env bash
# Bounded fuzzing: runs each fuzz target (tests/fuzz/*.rs) for FUZZ_SECONDS, in batches of
# FUZZ_BATCH_CASES proptest cases (a fresh random seed each batch), and prints per target the
# executions, the inputs the code accepted, and the findings. Exit status 1 if any finding.
#
#   FUZZ_SECONDS=120          seconds per target
#   FUZZ_BATCH_CASES=2000     PROPTEST_CASES of one batch
#   FUZZ_TARGETS="fuzz_config fuzz_tokenizer fuzz_arrow"
#   FUZZ_RELEASE=1            build with --release (default: the dev profile, deps at opt-level 3)
#   FUZZ_MEMORY_KB=8000000    address-space limit of a batch, so a runaway allocation aborts
#                             the batch (a finding) instead of exhausting the machine
#   FUZZ_LOG_DIR=target/fuzz-logs
set -uo pipefail
cd "$(dirname "$0")/../.."

seconds=${FUZZ_SECONDS:-120}
batch_cases=${FUZZ_BATCH_CASES:-2000}
targets=${FUZZ_TARGETS:-fuzz_config fuzz_tokenizer fuzz_arrow}
memory_kb=${FUZZ_MEMORY_KB:-8000000}
log_dir=${FUZZ_LOG_DIR:-target/fuzz-logs}
profile=()
[[ ${FUZZ_RELEASE:-0} == 1 ]] && profile=(--release)
test_args=(--nocapture --test-threads=1)
mkdir -p "$log_dir"

summary=()
total_findings=0
for target in $targets; do
    executable=$(cargo test "${profile[@]}" --test "$target" --no-run --message-format=json 2>/dev/null \
        | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
    if [[ -z $executable ]]; then
        echo "$target: build failed; run: cargo test ${profile[*]} --test $target --no-run" >&2
        exit 2
    fi
    start=$SECONDS batches=0 executions=0 accepted=0 findings=0
    while (( SECONDS - start < seconds )); do
        batches=$((batches + 1))
        log="$log_dir/$target-batch-$batches.log"
        ( ulimit -v "$memory_kb"; PROPTEST_CASES=$batch_cases exec timeout 900 "$executable" "${test_args[@]}" ) \
            >"$log" 2>&1
        status=$?
        read -r e a f < <(awk -F'[ =]' '/FUZZ_RESULT/ {
                for (i = 1; i < NF; i++) { if ($i == "executions") e += $(i+1);
                    if ($i == "accepted") a += $(i+1); if ($i == "findings") f += $(i+1) } }
            END { print e + 0, a + 0, f + 0 }' "$log")
        executions=$((executions + e)) accepted=$((accepted + a))
        # Failed tests: the fuzzed properties (FUZZ_FINDING) and the tests of fixed findings.
        failed=$(grep -ao '[0-9]* failed;' "$log" | awk '{ s += $1 } END { print s + 0 }')
        if (( f > 0 || failed > 0 )); then
            findings=$((findings + (failed > f ? failed : f)))
            grep -a -A1 'FUZZ_FINDING' "$log" | sed "s|^|  $target: |"
            awk '/^failures:$/ { on = 1; next } /^test result/ { on = 0 } on && NF == 1 { print $1 }' \
                "$log" | sort -u | sed "s|^|  $target: failed test |"
            echo "  $target: details and minimal inputs in $log"
        elif (( status != 0 )); then
            # Killed, aborted or timed out before proptest could report: a finding too.
            findings=$((findings + 1))
            echo "  $target: batch $batches exited with status $status (abort, signal or timeout); see $log"
            grep -a -m3 'memory allocation\|panicked\|SIG' "$log" | sed "s|^|  $target: |"
        else
            rm -f "$log"
        fi
    done
    total_findings=$((total_findings + findings))
    summary+=("$(printf '%-16s %4ds %4d batches %9d executions %9d accepted %3d findings' \
        "$target" "$((SECONDS - start))" "$batches" "$executions" "$accepted" "$findings")")
done

echo
echo "fuzz summary (${profile[*]:-dev} build, $batch_cases cases a batch):"
printf '  %s\n' "${summary[@]}"
(( total_findings == 0 ))
