#!/usr/bin/env bats
# shellcheck disable=SC2154  # bats sets status and output
# `cmake --install` puts every file where an administrator and the tools that
# read them expect it (cmake/Install.cmake, docs/packaging.md): programs in
# bin and sbin, man pages in their sections, completions where bash, zsh and
# fish look, systemd units naming the installed programs, the examples and the
# contrib files under share/doc, and in /etc only the GRUB drop-in.

bats_require_minimum_version 1.5.0

SRC=${VOLWATCH_SOURCE_DIR:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
BUILD=${VOLWATCH_BUILD_DIR:?run through ctest, or set VOLWATCH_BUILD_DIR}
BIN_PROGRAMS=(vcheck vlock vunlock)
SBIN_PROGRAMS=(vwatch vrebootgate vrebuild)

setup_file() {
    command -v cmake >/dev/null || skip "cmake is not installed"
    export STAGE="$BATS_FILE_TMPDIR/stage"
    DESTDIR="$STAGE" cmake --install "$BUILD" --prefix /usr >"$BATS_FILE_TMPDIR/install.log" 2>&1 ||
        { cat "$BATS_FILE_TMPDIR/install.log" >&3; return 1; }
}

# built PROG: true when CTest built PROG (it sets VCHECK, ... for those only).
built() {
    local var=${1^^}
    [[ -n ${!var:-} ]] || [[ -x $BUILD/tools/$1 ]]
}

@test "install: administrators' programs in sbin, the others in bin, all runnable from the tree" {
    local prog
    for prog in "${BIN_PROGRAMS[@]}"; do
        built "$prog" || continue
        [ -x "$STAGE/usr/bin/$prog" ]
        [ ! -e "$STAGE/usr/sbin/$prog" ]
        "$STAGE/usr/bin/$prog" --version | grep -q "^$prog (volwatch) "
    done
    for prog in "${SBIN_PROGRAMS[@]}"; do
        built "$prog" || continue
        [ -x "$STAGE/usr/sbin/$prog" ]
        [ ! -e "$STAGE/usr/bin/$prog" ]
        "$STAGE/usr/sbin/$prog" --version | grep -q "^$prog (volwatch) "
    done
}

@test "install: every man page in its section, bin programs in section 1 and sbin programs in 8" {
    command -v scdoc >/dev/null || skip "scdoc is not installed: no man pages are built"
    local src page section prog
    for src in "$SRC"/man/*.scd; do
        page=$(basename "$src" .scd)          # vcheck.1
        section=${page##*.}
        [ -f "$STAGE/usr/share/man/man$section/$page" ] || { echo "missing man$section/$page"; return 1; }
    done
    for prog in "${BIN_PROGRAMS[@]}"; do [ -f "$STAGE/usr/share/man/man1/$prog.1" ]; done
    for prog in "${SBIN_PROGRAMS[@]}"; do [ -f "$STAGE/usr/share/man/man8/$prog.8" ]; done
    [ -f "$STAGE/usr/share/man/man5/volwatch.toml.5" ]
    # man(1) finds them in the installed tree.
    if command -v man >/dev/null; then
        MANPATH="$STAGE/usr/share/man" man -w vrebuild | grep -q "/man8/vrebuild.8"
    fi
}

@test "install: completions where bash-completion, zsh and fish load them" {
    local prog bashdir=/usr/share/bash-completion/completions fishdir=/usr/share/fish/vendor_completions.d
    # Where the shells' own packages say they look, when they say it.
    if pkg-config --exists bash-completion 2>/dev/null; then
        [ "$(pkg-config --variable=completionsdir bash-completion)" = "$bashdir" ]
    fi
    if pkg-config --exists fish 2>/dev/null; then
        [ "$(pkg-config --variable=completionsdir fish)" = "$fishdir" ]
    fi
    if command -v zsh >/dev/null; then
        zsh -fc 'print -l $fpath' | grep -qx /usr/share/zsh/vendor-completions
    fi
    for prog in "${BIN_PROGRAMS[@]}" "${SBIN_PROGRAMS[@]}"; do
        [ -f "$STAGE$bashdir/$prog" ]
        [ -f "$STAGE/usr/share/zsh/vendor-completions/_$prog" ]
        [ -f "$STAGE$fishdir/$prog.fish" ]
    done
}

@test "install: systemd units in the prefix's unit directory, naming the installed programs" {
    local unit units=("$STAGE"/usr/lib/systemd/system/*.service)
    [ "${#units[@]}" -eq 2 ]
    [ -f "$STAGE/usr/lib/systemd/system/vwatch.service" ]
    [ -f "$STAGE/usr/lib/systemd/system/volwatch-rebootgate.service" ]
    grep -qx 'ExecStart=/usr/sbin/vwatch --log journal' "$STAGE/usr/lib/systemd/system/vwatch.service"
    grep -qx 'ExecStop=/usr/sbin/vrebootgate --wait=10m' "$STAGE/usr/lib/systemd/system/volwatch-rebootgate.service"
    [ -f "$STAGE/usr/lib/systemd/catalog/volwatch.catalog" ]
    # Every volwatch program an installed file names exists in the tree.
    local path
    while read -r path; do
        [ -x "$STAGE$path" ] || { echo "names $path, which is not installed"; return 1; }
    done < <(grep -rhoE '/[a-z/]*s?bin/v(check|lock|unlock|watch|rebootgate|rebuild)\b' \
                 "$STAGE/usr/lib/systemd" "$STAGE/usr/share/doc/volwatch/contrib" | sort -u)
}

@test "install: another prefix gets units and init snippets naming that prefix's programs" {
    local stage=$BATS_TEST_TMPDIR/opt
    DESTDIR="$stage" cmake --install "$BUILD" --prefix /opt/volwatch >/dev/null
    local root=$stage/opt/volwatch
    grep -qx 'ExecStart=/opt/volwatch/sbin/vwatch --log journal' "$root/lib/systemd/system/vwatch.service"
    grep -qx 'ExecStop=/opt/volwatch/sbin/vrebootgate --wait=10m' "$root/lib/systemd/system/volwatch-rebootgate.service"
    grep -q '<string>/opt/volwatch/sbin/vwatch</string>' "$root/share/doc/volwatch/contrib/launchd/org.volwatch.vwatch.plist"
    grep -q "^ *'\?/opt/volwatch/sbin/vrebootgate --wait=10m --owner 1" "$root/share/doc/volwatch/contrib/sysvinit/volwatch-rc.shutdown"
    grep -qx 'vcheck=${VOLWATCH_VCHECK:-/opt/volwatch/bin/vcheck}' "$stage/etc/grub.d/42_volwatch"
    run -1 grep -rE '/usr(/local)?/s?bin/v(watch|rebootgate|rebuild|check|lock|unlock)\b' "$root/lib/systemd" "$root/share/doc/volwatch/contrib"
    # Nothing lands outside the prefix but the GRUB drop-in: grub-mkconfig
    # runs only the scripts in /etc/grub.d.
    [ "$(cd "$stage" && ls | tr '\n' ' ')" = "etc opt " ]
    [ "$(cd "$stage" && find etc -type f)" = etc/grub.d/42_volwatch ]
}

@test "install: the installed units pass systemd-analyze verify" {
    command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed"
    local dir=$BATS_TEST_TMPDIR/units unit
    mkdir -p "$dir"
    # verify checks that ExecStart= programs exist: point them into the tree.
    for unit in "$STAGE"/usr/lib/systemd/system/*.service; do
        sed "s|=\(-\?\)/usr/sbin/|=\1$STAGE/usr/sbin/|" "$unit" >"$dir/$(basename "$unit")"
    done
    run systemd-analyze verify --man=no "$dir"/*.service
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "install: examples and contrib files under share/doc/volwatch; in /etc only the GRUB drop-in, no host config" {
    local doc=$STAGE/usr/share/doc/volwatch file rel
    while read -r file; do
        rel=${file#"$SRC"/examples/}
        [ -f "$doc/examples/$rel" ] || { echo "missing examples/$rel"; return 1; }
        cmp -s "$file" "$doc/examples/$rel"
    done < <(find "$SRC/examples" -type f ! -name CMakeLists.txt)
    [ -f "$doc/examples/ldconfig/bootcaches.toml" ]
    [ -f "$doc/examples/two-esp/host.toml" ]
    [ ! -e "$doc/examples/CMakeLists.txt" ]
    [ -f "$doc/contrib/launchd/org.volwatch.vwatch.plist" ]
    [ -f "$doc/contrib/launchd/org.volwatch.rebootgate.plist" ]
    [ -f "$doc/contrib/sysvinit/volwatch-rc.shutdown" ]
    [ -f "$doc/contrib/prometheus/volwatch.rules.yml" ]
    [ -f "$doc/contrib/prometheus/volwatch.rules.test.yml" ]
    [ -f "$doc/README.md" ]
    [ -f "$doc/copyright" ]
    for file in "$SRC"/docs/schema/*.json; do cmp -s "$file" "$doc/schema/$(basename "$file")"; done
    [ "$(cd "$STAGE" && find etc -type f)" = etc/grub.d/42_volwatch ]
    [ -x "$STAGE/etc/grub.d/42_volwatch" ]
    # It runs the vcheck of this installation.
    grep -qx 'vcheck=${VOLWATCH_VCHECK:-/usr/bin/vcheck}' "$STAGE/etc/grub.d/42_volwatch"
    [ ! -e "$STAGE/usr/etc" ]
    # Only /usr and /etc/grub.d: no /lib, /var or /run.
    [ "$(cd "$STAGE" && ls | tr '\n' ' ')" = "etc usr " ]
}
