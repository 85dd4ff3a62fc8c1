#!/usr/bin/env bats
# shellcheck disable=SC2154  # bats sets status, output and stderr
# Docs that cannot drift (STYLE habit 9). For every program CTest built (it
# sets VCHECK, VLOCK, ... only for those), the options listed by `PROG --help`
# must appear in man/PROG.<section>.scd and in the bash, zsh and fish
# completions; --help, --version and an unknown option must behave the same on
# every program; the rendered man pages must lint clean; and the exit-code
# table in man/include/exit-status.scd must match libcommon's.
# The tests themselves are linted too: no assertion that set -e ignores.
# A new program needs nothing here: build it, write its page and completions.

bats_require_minimum_version 1.5.0

PROGRAMS=(vcheck vlock vunlock vrebuild vrebootgate vwatch)
SRC=${VOLWATCH_SOURCE_DIR:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
BUILD=${VOLWATCH_BUILD_DIR:-}

# built_programs: "NAME PATH" for each program binary under test.
built_programs() {
    local name var any=false
    for name in "${PROGRAMS[@]}"; do
        var=${name^^}
        [[ -n ${!var:-} ]] && any=true
    done
    for name in "${PROGRAMS[@]}"; do
        var=${name^^}
        if $any; then
            [[ -n ${!var:-} && -x ${!var} ]] && echo "$name ${!var}"
        elif [[ -n $BUILD && -x $BUILD/tools/$name ]]; then
            # Run by hand without CTest's variables: take what the build has.
            echo "$name $BUILD/tools/$name"
        fi
    done
    return 0
}

load_programs() {
    mapfile -t PROGRAM_LINES < <(built_programs)
    [[ ${#PROGRAM_LINES[@]} -gt 0 ]] || skip "no program binary was built (none of ${PROGRAMS[*]^^} is set)"
}

# help_options BIN: every option spelling in BIN's --help ("-a", "--all"), one
# a line. CLI11 lists them as "  -a,--all TYPE   description".
help_options() {
    "$1" --help | awk '
        /^  -/ {
            n = split($1, names, ",")
            for (i = 1; i <= n; i++) {
                name = names[i]
                sub(/[=\[].*$/, "", name)
                if (name ~ /^--?[A-Za-z0-9]/) print name
            }
        }'
}

# man_source PROG: the page's source with its #include lines expanded.
man_source() {
    local page line
    page=$(man_page_file "$1") || return 1
    while IFS= read -r line || [[ -n $line ]]; do
        if [[ $line =~ ^#include\ ([A-Za-z0-9._-]+)$ ]]; then
            cat "$SRC/man/include/${BASH_REMATCH[1]}.scd"
        else
            printf '%s\n' "$line"
        fi
    done <"$page"
}

man_page_file() {
    local pages=()
    shopt -s nullglob
    pages=("$SRC"/man/"$1".[1-8].scd)
    shopt -u nullglob
    [[ ${#pages[@]} -eq 1 ]] || return 1
    echo "${pages[0]}"
}

# Option spellings each document offers, one a line.
man_options() {
    # Terms of definition lists: lines starting with "*", options in bold.
    man_source "$1" | grep '^\*' | grep -oE '\*--?[A-Za-z0-9][A-Za-z0-9-]*\*' | tr -d '*'
}
bash_options() {
    grep -v '^[[:space:]]*#' "$SRC/completions/bash/$1" | grep -oE -- '(^|[^A-Za-z0-9-])--?[A-Za-z0-9][A-Za-z0-9-]*' |
        sed -E 's/^[^-]//'
}
zsh_options() {
    # Option specs of _arguments, with their [descriptions] removed.
    grep -v '^[[:space:]]*#' "$SRC/completions/zsh/_$1" | sed -E 's/\[[^]]*\]//g' |
        grep -oE -- '(^|[^A-Za-z0-9-])--?[A-Za-z0-9][A-Za-z0-9-]*' | sed -E 's/^[^-]//'
}
fish_options() {
    grep -E "^[[:space:]]*complete[[:space:]].*(-c|--command)[[:space:]]+$1([[:space:]]|$)" "$SRC/completions/fish/$1.fish" |
        grep -oE -- "(^|[[:space:]])(-l|--long-option|-s|--short-option)[[:space:]]+['\"]?[A-Za-z0-9][A-Za-z0-9-]*" |
        awk '{ gsub(/["'\'']/, "", $2); print ($1 == "-l" || $1 == "--long-option" ? "--" : "-") $2 }'
}

@test "every option in --help is in the man page and in all three completions" {
    load_programs
    local problems=() options=() line name bin option kind file documented
    for line in "${PROGRAM_LINES[@]}"; do
        name=${line%% *} bin=${line#* }
        mapfile -t options < <(help_options "$bin")
        if [[ ${#options[@]} -eq 0 ]]; then
            problems+=("$name: no options found in '$name --help'")
            continue
        fi
        for kind in man bash zsh fish; do
            case $kind in
                man) file=$(man_page_file "$name") || file="$SRC/man/$name.<section>.scd (one page)" ;;
                bash) file=$SRC/completions/bash/$name ;;
                zsh) file=$SRC/completions/zsh/_$name ;;
                fish) file=$SRC/completions/fish/$name.fish ;;
            esac
            if [[ ! -f $file ]]; then
                problems+=("$name: missing $file")
                continue
            fi
            documented=$("${kind}_options" "$name" | sort -u)
            for option in "${options[@]}"; do
                grep -qxF -- "$option" <<<"$documented" || problems+=("$name: $option is missing from ${file#"$SRC"/}")
            done
        done
    done
    if [[ ${#problems[@]} -gt 0 ]]; then
        printf '%s\n' "${problems[@]}"
        return 1
    fi
}

@test "every man page has the standard sections and the shared exit-status table" {
    load_programs
    local problems=() line name page section
    for line in "${PROGRAM_LINES[@]}"; do
        name=${line%% *}
        page=$(man_page_file "$name") || { problems+=("$name: no man/$name.<section>.scd"); continue; }
        for section in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" ENVIRONMENT FILES EXAMPLES "SEE ALSO"; do
            grep -qx "# $section" "$page" || problems+=("$name: ${page#"$SRC"/} has no '# $section' section")
        done
        for include in exit-status environment files; do
            grep -qx "#include $include" "$page" ||
                problems+=("$name: ${page#"$SRC"/} does not include the shared man/include/$include.scd")
        done
    done
    if [[ ${#problems[@]} -gt 0 ]]; then
        printf '%s\n' "${problems[@]}"
        return 1
    fi
}

@test "--help and --version exit 0; an unknown option exits 64 with a hint" {
    load_programs
    local problems=() line name bin
    for line in "${PROGRAM_LINES[@]}"; do
        name=${line%% *} bin=${line#* }
        run --separate-stderr "$bin" --help
        [[ $status -eq 0 ]] || problems+=("$name --help: exit status $status, expected 0")
        [[ $output == *--help* ]] || problems+=("$name --help: does not list --help on stdout")

        run --separate-stderr "$bin" --version
        [[ $status -eq 0 ]] || problems+=("$name --version: exit status $status, expected 0")
        [[ ${output%%$'\n'*} =~ ^$name\ .*[0-9]+\.[0-9]+ ]] ||
            problems+=("$name --version: first line '${output%%$'\n'*}' does not start with '$name' and give a version")

        run --separate-stderr "$bin" --no-such-option-docs-test
        [[ $status -eq 64 ]] || problems+=("$name --no-such-option-docs-test: exit status $status, expected 64")
        [[ $stderr == *"Try '$name --help'."* ]] ||
            problems+=("$name --no-such-option-docs-test: stderr lacks \"Try '$name --help'.\": $stderr")
        [[ -z $output ]] || problems+=("$name --no-such-option-docs-test: wrote to stdout: $output")
    done
    if [[ ${#problems[@]} -gt 0 ]]; then
        printf '%s\n' "${problems[@]}"
        return 1
    fi
}

@test "the rendered man pages lint clean" {
    [[ -n $BUILD ]] || skip "VOLWATCH_BUILD_DIR is not set"
    local pages=() problems=() page out source name
    shopt -s nullglob
    pages=("$BUILD"/man/*.[1-8])
    shopt -u nullglob
    [[ ${#pages[@]} -gt 0 ]] || skip "no rendered man pages in $BUILD/man (scdoc missing at configure time?)"
    # Every source and every built program has its rendered page.
    for source in "$SRC"/man/*.scd; do
        name=$(basename "$source" .scd)
        [[ -f $BUILD/man/$name ]] || problems+=("$BUILD/man/$name: not rendered from ${source#"$SRC"/} (rebuild?)")
    done
    if command -v mandoc >/dev/null; then
        for page in "${pages[@]}"; do
            out=$(mandoc -Tlint -W warning "$page" 2>&1) || problems+=("$page: mandoc -Tlint failed")
            [[ -z $out ]] && continue
            problems+=("$out")
        done
    elif command -v groff >/dev/null; then
        echo "# mandoc not installed (apt-get install mandoc); linting with groff" >&3
        for page in "${pages[@]}"; do
            out=$(groff -man -ww -z "$page" 2>&1) || problems+=("$page: groff failed")
            [[ -n $out ]] && problems+=("$page: $out")
        done
    else
        skip "neither mandoc nor groff is installed (apt-get install mandoc)"
    fi
    if [[ ${#problems[@]} -gt 0 ]]; then
        printf '%s\n' "${problems[@]}"
        return 1
    fi
}

@test "the man pages' exit-code table matches libcommon's" {
    local header=$SRC/libcommon/include/volwatch/exit_codes.hpp
    local names=$SRC/libcommon/src/exit_codes.cpp
    local table=$SRC/man/include/exit-status.scd
    # "number name meaning" from the code: the enum, then the two functions.
    local from_code from_man
    from_code=$(awk '
        FNR == 1 { file++ }
        file == 1 && /enum class ExitCode/ { in_enum = 1 }
        file == 1 && in_enum && /^};/ { in_enum = 0 }
        file == 1 && in_enum && match($0, /^[ \t]*[a-z_]+[ \t]*=[ \t]*[0-9]+/) {
            s = substr($0, RSTART, RLENGTH); gsub(/[ \t]/, "", s); split(s, kv, "=")
            number[kv[1]] = kv[2]; order[++n] = kv[1]
        }
        file == 2 && /exit_code_name\(ExitCode/ { in_fn = "name" }
        file == 2 && /exit_code_meaning\(ExitCode/ { in_fn = "meaning" }
        file == 2 && in_fn != "" && match($0, /case ExitCode::[a-z_]+: return "[^"]*"/) {
            s = substr($0, RSTART, RLENGTH)
            key = s; sub(/^case ExitCode::/, "", key); sub(/:.*$/, "", key)
            text = s; sub(/^[^"]*"/, "", text); sub(/"$/, "", text)
            if (in_fn == "name") name[key] = text; else meaning[key] = text
        }
        END { for (i = 1; i <= n; i++) { k = order[i]; print number[k] "\t" name[k] "\t" meaning[k] } }
    ' "$header" "$names" | sort -n)
    # Rows of the scdoc table: "|  N", ":  name", ":  meaning".
    from_man=$(awk '
        /^\|[ \t]+[0-9]+[ \t]*$/ { if (row) print row; n = $0; sub(/^\|[ \t]+/, "", n); sub(/[ \t]+$/, "", n); row = n; next }
        row != "" && /^:[ \t]+/ { c = $0; sub(/^:[ \t]+/, "", c); sub(/[ \t]+$/, "", c); row = row "\t" c; next }
        row != "" { print row; row = "" }
        END { if (row) print row }
    ' "$table" | sort -n)
    [[ -n $from_code ]] || { echo "no exit codes parsed from $header"; return 1; }
    if [[ $from_code != "$from_man" ]]; then
        echo "man/include/exit-status.scd disagrees with libcommon (exit_codes.hpp, exit_codes.cpp):"
        diff <(echo "$from_code") <(echo "$from_man") | sed 's/^</  code:/; s/^>/  man: /'
        return 1
    fi
}

# complete_bash PROG BASH_COMPLETION WORD...: what PROG's bash completion offers
# for the command line WORD..., one a line; with BASH_COMPLETION=yes the
# bash-completion library is loaded first, as on a configured system.
complete_bash() {
    local prog=$1 library=$2
    shift 2
    bash --norc --noprofile -c '
        prog=$1 library=$2 file=$3
        shift 3
        if [[ $library == yes ]]; then source /usr/share/bash-completion/bash_completion || exit 2; fi
        source "$file" || exit 2
        spec=$(complete -p "$prog") || exit 3
        [[ $spec =~ -F\ ([^ ]+) ]] || exit 3
        COMP_WORDS=("$@")
        COMP_CWORD=$(( $# - 1 ))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        COMPREPLY=()
        "${BASH_REMATCH[1]}" "$prog" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf "%s\n" "${COMPREPLY[@]}"
    ' _ "$prog" "$library" "$SRC/completions/bash/$prog" "$@"
}

@test "bash: each program's completion offers every long option" {
    load_programs
    local problems=() libraries=(no) library line name bin offered option
    [[ -f /usr/share/bash-completion/bash_completion ]] && libraries+=(yes)
    [[ ${#libraries[@]} -eq 2 ]] || echo "# bash-completion not installed: testing without it only" >&3
    for library in "${libraries[@]}"; do
        for line in "${PROGRAM_LINES[@]}"; do
            name=${line%% *} bin=${line#* }
            [[ -f $SRC/completions/bash/$name ]] || continue  # reported by the option test
            offered=$(complete_bash "$name" "$library" "$name" --) ||
                { problems+=("$name: completions/bash/$name did not load or register 'complete -F'"); continue; }
            for option in $(help_options "$bin" | grep '^--'); do
                grep -qxF -- "$option" <<<"$offered" ||
                    problems+=("$name: bash completion (bash-completion loaded: $library) does not offer $option for '$name --'")
            done
        done
    done
    if [[ ${#problems[@]} -gt 0 ]]; then
        printf '%s\n' "${problems[@]}"
        return 1
    fi
}

@test "bash: vcheck completes --format and its values" {
    [[ -n ${VCHECK:-} ]] || skip "vcheck was not built"
    local library
    for library in no yes; do
        if [[ $library == yes && ! -f /usr/share/bash-completion/bash_completion ]]; then
            echo "# bash-completion not installed: testing without it only" >&3
            continue
        fi
        run complete_bash vcheck "$library" vcheck --f
        [ "$status" -eq 0 ]
        [ "$output" = "--format" ]
        run complete_bash vcheck "$library" vcheck --format ""
        [ "$status" -eq 0 ]
        [ "$output" = $'human\njson\nprometheus' ]
        mkdir -p "$BATS_TEST_TMPDIR/locks-here"
        touch "$BATS_TEST_TMPDIR/locks-file"
        run complete_bash vcheck "$library" vcheck --lock-dir "$BATS_TEST_TMPDIR/locks-"
        [ "$status" -eq 0 ]
        [ "$output" = "$BATS_TEST_TMPDIR/locks-here" ]
        run complete_bash vcheck "$library" vcheck --config "$BATS_TEST_TMPDIR/locks-f"
        [ "$status" -eq 0 ]
        [ "$output" = "$BATS_TEST_TMPDIR/locks-file" ]
    done
}

@test "fish: each program's completion offers every long option" {
    command -v fish >/dev/null || skip "fish is not installed (apt-get install fish)"
    load_programs
    local problems=() line name bin offered option
    for line in "${PROGRAM_LINES[@]}"; do
        name=${line%% *} bin=${line#* }
        [[ -f $SRC/completions/fish/$name.fish ]] || continue
        # fish autoloads completions for commands it finds on PATH.
        # shellcheck disable=SC2016  # fish expands $argv
        offered=$(PATH=$(dirname "$bin"):$PATH fish --no-config -c \
            'set -p fish_complete_path $argv[1]; complete -C "$argv[2] --"' "$SRC/completions/fish" "$name" | cut -f1)
        for option in $(help_options "$bin" | grep '^--'); do
            grep -qxF -- "$option" <<<"$offered" || problems+=("$name: fish completion does not offer $option for '$name --'")
        done
    done
    if [[ -n ${VCHECK:-} ]]; then
        # shellcheck disable=SC2016
        offered=$(PATH=$(dirname "$VCHECK"):$PATH fish --no-config -c \
            'set -p fish_complete_path $argv[1]; complete -C "vcheck --format="' "$SRC/completions/fish" | cut -f1)
        [[ $offered == $'--format=human\n--format=json\n--format=prometheus' ]] ||
            problems+=("vcheck: fish completion of '--format=' offers: $offered")
    fi
    if [[ ${#problems[@]} -gt 0 ]]; then
        printf '%s\n' "${problems[@]}"
        return 1
    fi
}

# complete_zsh BINDIR LINE: the listing an interactive zsh shows for the
# matches after LINE, with compinit loading our completions first. A widget
# lists the choices and then prints a marker, so the listing is complete when
# the marker shows (a Tab followed by typeahead may skip the listing).
complete_zsh() {
    local raw
    raw=$(zsh -f -c '
        zmodload zsh/zpty || exit 2
        zpty -b z zsh -f -i
        # wait_for TEXT: read the terminal until TEXT shows up (30 s at most).
        out=
        wait_for() {
            local chunk deadline=$(( SECONDS + 30 ))
            while (( SECONDS < deadline )); do
                if zpty -r -t z chunk; then out+=$chunk; [[ $out == *$1* ]] && return 0; else sleep 0.05; fi
            done
            return 1
        }
        zpty -w z "PS1= RPS1=; PATH=${(q)2}:\$PATH; fpath=(${(q)1} \$fpath); autoload -Uz compinit; compinit -u -D"
        zpty -w z "LISTMAX=100000; _docs_list() { zle list-choices; zle -R; print -rn -- LISTED-\$((6*7)) }"
        zpty -w z "zle -N _docs_list; bindkey \"^X^L\" _docs_list; print READY-\$((6*7))"
        wait_for READY-42 || exit 3
        out=
        zpty -n -w z "$3"$'"'"'\C-x\C-l'"'"'
        wait_for LISTED-42 || exit 4
        zpty -d z
        print -r -- "$out"
    ' _ "$SRC/completions/zsh" "$1" "$2") || return 1
    # Terminal control sequences become line breaks, so no two words run together.
    sed -e 's/\x1b\[[0-9;?]*[A-Za-z]/\n/g' -e 's/[\r\a]//g' <<<"$raw"
}

@test "zsh: compinit loads each program's completion, which offers every long option" {
    command -v zsh >/dev/null || skip "zsh is not installed (apt-get install zsh)"
    zsh -f -c 'zmodload zsh/zpty' 2>/dev/null || skip "zsh has no zsh/zpty module"
    load_programs
    local problems=() line name bin listing registered option
    for line in "${PROGRAM_LINES[@]}"; do
        name=${line%% *} bin=${line#* }
        [[ -f $SRC/completions/zsh/_$name ]] || continue
        registered=$(zsh -f -c 'fpath=($1 $fpath); autoload -Uz compinit; compinit -u -D; print -r -- ${_comps[$2]}' \
            _ "$SRC/completions/zsh" "$name")
        if [[ $registered != "_$name" ]]; then
            problems+=("$name: compinit does not register _$name (got '$registered'); is '#compdef $name' its first line?")
            continue
        fi
        listing=$(complete_zsh "$(dirname "$bin")" "$name --") ||
            { problems+=("$name: zsh completion of '$name --' did not finish"); continue; }
        for option in $(help_options "$bin" | grep '^--'); do
            grep -qE -- "(^|[[:space:]])$option([[:space:]]|$)" <<<"$listing" ||
                problems+=("$name: zsh completion does not offer $option for '$name --'")
        done
    done
    if [[ -n ${VCHECK:-} ]]; then
        listing=$(complete_zsh "$(dirname "$VCHECK")" "vcheck --format=")
        for option in human json prometheus; do
            grep -qw -- "$option" <<<"$listing" || problems+=("vcheck: zsh completion of '--format=' does not offer $option")
        done
    fi
    if [[ ${#problems[@]} -gt 0 ]]; then
        printf '%s\n' "${problems[@]}"
        return 1
    fi
}

@test "vcheck.1 documents every JSON member and Prometheus family vcheck prints" {
    [[ -n ${VCHECK:-} ]] || skip "vcheck was not built"
    command -v python3 >/dev/null || skip "python3 is not installed"
    local page=$SRC/man/vcheck.1.scd problems=() key family
    # A volume with a cache and a helper target, so every kind of object shows.
    local root=$BATS_TEST_TMPDIR/sandbox
    mkdir -p "$root/vol/etc/volwatch" "$root/vol/src" "$root/vol/boot" "$root/efi" "$root/locks"
    chmod 755 "$root" "$root/locks"
    echo kernel >"$root/vol/boot/vmlinuz"
    cat >"$root/host.toml" <<TOML
lock_dir = "$root/locks"
discover = false
volumes = ["$root/vol"]

[rebuilders]
pack = { argv = ["true"] }

[[helpers]]
volume = "$root/vol"
targets = ["$root/efi"]
TOML
    cat >"$root/vol/etc/volwatch/bootcaches.toml" <<TOML
version = 1

[[cache]]
name = "pack"
sources = ["src"]
product = "out/pack"
rebuild = "pack"

[helpers]
files = ["boot/vmlinuz"]
TOML
    run --separate-stderr "$VCHECK" --config "$root/host.toml" --json "$root/vol" "$root/not-a-volume"
    [ "$status" -eq 66 ]
    local keys
    keys=$(python3 -c '
import json, sys
def walk(node):
    if isinstance(node, dict):
        for key, value in node.items():
            print(key)
            walk(value)
    elif isinstance(node, list):
        for item in node:
            walk(item)
walk(json.load(sys.stdin))' <<<"$output" | sort -u)
    [[ -n $keys ]]
    for key in $keys; do
        grep -qF -- "*$key*" "$page" || problems+=("vcheck: JSON member '$key' is not described in man/vcheck.1.scd")
    done
    run --separate-stderr "$VCHECK" --config "$root/host.toml" --format=prometheus
    [ "$status" -eq 1 ]
    for family in $(awk '$1 == "#" && $2 == "TYPE" { print $3 }' <<<"$output"); do
        grep -qE -- "(^|[^a-z_])${family}([^a-z_]|$)" "$page" ||
            problems+=("vcheck: Prometheus family '$family' is not listed in man/vcheck.1.scd")
    done
    if [[ ${#problems[@]} -gt 0 ]]; then
        printf '%s\n' "${problems[@]}"
        return 1
    fi
}

@test "no bats assertion that cannot fail: a mid-test '! cmd' or '[ a ] && [ b ]'" {
    # bats runs tests under set -e, which ignores both forms: write `run ! cmd`,
    # `run -N cmd`, `! cmd || false`, or separate [ ] lines.
    local found
    found=$(grep -nE '^[[:space:]]*! |^[[:space:]]*\[\[? [^|]*\]\]?[[:space:]]*&&[[:space:]]*\[' "$SRC"/tests/cli/*.bats |
            grep -vE '\|\|' || true)
    [[ -z $found ]] || { echo "$found"; false; }
}
