#!/usr/bin/env bash
# Installs what is missing, configures, builds, and runs every test through
# ctest (unit tests and end-to-end tests of the real binaries).
#   scripts/test.sh               normal build (warnings are errors) in build/
#   scripts/test.sh --sanitize    AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/
#   scripts/test.sh --fuzz[=SECS] build the libFuzzer targets with clang, volwatch_common instrumented
#                                 too, in build-fuzz/, and fuzz each for SECS (default 60)
#   scripts/test.sh --vm[=SCENARIO,...]  normal build, its .deb (cpack -G DEB), then the
#                                 virtual-machine acceptance suite (tests/vm/run.sh, as root)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=normal
fuzz_seconds=60
vm_scenarios=()
for arg in "$@"; do
    case "$arg" in
        --sanitize) mode=sanitize ;;
        --fuzz) mode=fuzz ;;
        --fuzz=*) mode=fuzz; fuzz_seconds=${arg#--fuzz=} ;;
        --vm) mode=vm ;;
        --vm=*) mode=vm; IFS=, read -ra vm_scenarios <<<"${arg#--vm=}" ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "test.sh: unknown argument $arg" >&2; exit 64 ;;
    esac
done

scripts/deps.sh test
if [[ $mode == vm ]]; then scripts/deps.sh vm; fi
jobs=$(nproc 2>/dev/null || echo 2)

case "$mode" in
normal)
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVOLWATCH_WERROR=ON >/dev/null
    cmake --build build -j "$jobs"
    ctest --test-dir build --output-on-failure -j "$jobs"
    ;;
sanitize)
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DVOLWATCH_WERROR=ON \
        -DVOLWATCH_SANITIZE=address,undefined >/dev/null
    cmake --build build-asan -j "$jobs"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir build-asan --output-on-failure -j "$jobs"
    ;;
vm)
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVOLWATCH_WERROR=ON >/dev/null
    cmake --build build -j "$jobs"
    rm -f build/volwatch_*.deb
    (cd build && cpack -G DEB >/dev/null)
    deb=$(ls build/volwatch_*.deb)
    bash tests/vm/run.sh "$deb" "${vm_scenarios[@]}"
    ;;
fuzz)
    if ! command -v clang++ >/dev/null; then echo "test.sh: clang++ not found; fuzzing skipped"; exit 0; fi
    CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVOLWATCH_BUILD_FUZZERS=ON \
        -DVOLWATCH_BUILD_TESTS=ON >/dev/null
    cmake --build build-fuzz -j "$jobs" --target fuzz_config fuzz_helper_target
    seed=${VOLWATCH_FUZZ_SEED:-$(date +%s)}
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # Each target with its own corpus: the config loader and the helper-target spec parser.
    for pair in fuzz_config:corpus fuzz_helper_target:corpus_helper_target; do
        target=${pair%%:*}
        mkdir -p "$work/$target"
        cp -r "tests/fuzz/${pair#*:}/." "$work/$target/"
        echo "fuzz: $target, seed $seed, ${fuzz_seconds}s (reproduce with VOLWATCH_FUZZ_SEED=$seed)"
        if ! "build-fuzz/tests/fuzz/$target" -seed="$seed" -max_total_time="$fuzz_seconds" -max_len=65536 \
            -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/$target-" "$work/$target" 2>"$work/$target.log"; then
            tail -40 "$work/$target.log"
            echo "fuzz: $target FAILED with seed $seed; crashing inputs:"; ls "$work/$target"-crash-* "$work/$target"-timeout-* 2>/dev/null || true
            exit 1
        fi
        tail -3 "$work/$target.log"
        # Coverage after the seed corpus and at the end: the parser is instrumented,
        # so the count should keep growing (a flat count means the fuzzer is blind).
        echo "fuzz: $target coverage $(grep -m1 -o 'INITED cov: [0-9]*' "$work/$target.log" | grep -o '[0-9]*$' || echo '?') after the corpus," \
            "$(grep -o 'cov: [0-9]*' "$work/$target.log" | tail -1 | grep -o '[0-9]*$' || echo '?') at the end"
    done
    ;;
esac
