#!/usr/bin/env bats
# shellcheck disable=SC2154  # bats sets status, output and stderr
# The GRUB drop-in contrib/grub/42_volwatch (volwatch-grub(8)) and the vcheck
# option it reads the helper targets with, --list-helpers. The targets are
# directories of a sandbox: tests/cli/fake-grub-probe stands in for
# grub-probe (through grub-mkconfig_lib's grub_probe variable), and
# VOLWATCH_GRUB_DEFAULTS names the defaults file instead of /etc/default/grub.
# grub-mkconfig_lib and grub-script-check come from grub-common.

bats_require_minimum_version 1.5.0
load common

setup() {
    [[ -r /usr/share/grub/grub-mkconfig_lib ]] || skip "grub-common is not installed (no grub-mkconfig_lib)"
    command -v grub-script-check >/dev/null || skip "grub-common is not installed (no grub-script-check)"
    DROPIN=$VOLWATCH_SOURCE_DIR/contrib/grub/42_volwatch
    T=$(mktemp -d "${BATS_TMPDIR:-/tmp}/volwatch-grub.XXXXXX")
    mkdir -p "$T/esp1" "$T/esp2" "$T/boot"
    T=$(realpath "$T")
    # esp1 is a mounted vfat file system, esp2 a bare directory on the root.
    printf '%s\n' "$T/esp1 /dev/sda1 A1B2-C3D4 fat" "$T/boot /dev/sda3 0bd0-1111 ext2" "/ /dev/sda2 5d2c8a1e-4b7f ext2" >"$T/map"
    cat >"$T/host.toml" <<TOML
[[helpers]]
volume  = "/"
targets = ["$T/esp1", "$T/esp2", "UUID=B1B2-C3D4"]
fstype  = "vfat"
TOML
    cat >"$T/defaults" <<'DEFAULTS'
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX="console=ttyS0"
DEFAULTS
    export grub_probe=$VOLWATCH_SOURCE_DIR/tests/cli/fake-grub-probe FAKE_GRUB_PROBE_MAP=$T/map
    export VOLWATCH_VCHECK=$VCHECK VOLWATCH_CONFIG=$T/host.toml VOLWATCH_GRUB_DEFAULTS=$T/defaults
    unset GRUB_DEVICE GRUB_DEVICE_UUID
}
teardown() { [[ -z ${T:-} ]] || rm -rf "$T"; }

# The body every live entry has after its access lines.
live_body() { # live_body KERNEL_OPTIONS [INITRD]
    cat <<BODY
	slot=
	generation=
	if [ -f (\$root)/volwatch/current ]; then
	    source (\$root)/volwatch/current
	elif [ -f (\$root)/volwatch/current.new ]; then
	    source (\$root)/volwatch/current.new
	fi
	if [ -n "\$slot" ]; then
		echo 'Loading Linux from volwatch slot '"\$slot"', generation '"\$generation"' ...'
		linux /volwatch/slot-\$slot/vmlinuz $1
BODY
    [[ ${2-initrd.img} == "" ]] || printf '\t\tinitrd /volwatch/slot-$slot/%s\n' "${2-initrd.img}"
    cat <<'BODY'
	else
		echo 'volwatch: no synced helper set here yet (neither volwatch/current nor volwatch/current.new)'
	fi
}
BODY
}

@test "vcheck --list-helpers prints each target with its volume and fstype, tab-separated, in config order" {
    printf '[[helpers]]\nvolume = "/srv/img"\ntargets = ["/mnt/x"]\n' >>"$T/host.toml"
    run --separate-stderr "$VCHECK" --list-helpers
    [ "$status" -eq 0 ]
    [ -z "$stderr" ]
    [ "$output" = "$(printf '/\t%s\tvfat\n/\t%s\tvfat\n/\tUUID=B1B2-C3D4\tvfat\n/srv/img\t/mnt/x\t-' "$T/esp1" "$T/esp2")" ]
    run --separate-stderr "$VCHECK" --list-helpers --quiet
    [ "$status" -eq 0 ]
    [ -z "$output" ]
}

@test "vcheck --list-helpers: none configured prints nothing; bad config 78; combined with a check 64" {
    printf 'discover = false\n' >"$T/host.toml"
    run --separate-stderr "$VCHECK" --list-helpers
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    printf '[[helpers]]\nvolume = "/"\ntargets = "x"\n' >"$T/host.toml"
    run --separate-stderr "$VCHECK" --list-helpers
    [ "$status" -eq 78 ]
    [ "$stderr" = "vcheck: $T/host.toml:3: helpers[0].targets: expected an array of strings, found a string" ]
    # A target named twice (here by a second table, with a trailing slash)
    # would get a generation per naming: refused, naming both places.
    printf '[[helpers]]\nvolume = "/"\ntargets = ["/boot/efi"]\n[[helpers]]\nvolume = "/srv"\ntargets = ["/x", "/boot/efi/"]\n' >"$T/host.toml"
    run --separate-stderr "$VCHECK" --list-helpers
    [ "$status" -eq 78 ]
    [ -z "$output" ]
    [ "$stderr" = "vcheck: $T/host.toml:6: helpers[1].targets[1]: \"/boot/efi/\" is already a target at line 1 (helpers[0].targets[0]); a helper target holds one volume's set and is named once" ]
    for other in / --all --deep --json --format=json; do
        run --separate-stderr "$VCHECK" --list-helpers "$other"
        [ "$status" -eq 64 ]
        [[ "$stderr" == *"excludes"* ]]
    done
}

@test "drop-in: an entry per mounted target, found by file-system UUID; a bare directory is skipped with a note" {
    export GRUB_DEVICE=/dev/sda2 GRUB_DEVICE_UUID=5d2c8a1e-4b7f
    run --separate-stderr "$DROPIN"
    [ "$status" -eq 0 ]
    [ "$stderr" = "42_volwatch: $T/esp2: not a mounted file system (skipped)" ]
    local id=${T//[^A-Za-z0-9_-]/_}_esp1 options="root=UUID=5d2c8a1e-4b7f ro console=ttyS0 quiet"
    expected=$(
        echo "menuentry 'Debian GNU/Linux, from volwatch helper $T/esp1' --class debian --class gnu-linux --class gnu --class os \$menuentry_id_option 'volwatch-$id' {"
        printf '\tinsmod part_gpt\n\tinsmod fat\n\tsearch --no-floppy --fs-uuid --set=root A1B2-C3D4\n'
        live_body "$options"
        echo "menuentry 'Debian GNU/Linux, from volwatch helper UUID=B1B2-C3D4' --class debian --class gnu-linux --class gnu --class os \$menuentry_id_option 'volwatch-UUID_B1B2-C3D4' {"
        printf '\tinsmod part_gpt\n\tinsmod part_msdos\n\tinsmod fat\n\tsearch --no-floppy --fs-uuid --set=root B1B2-C3D4\n'
        live_body "$options"
    )
    diff <(echo "$expected") <(echo "$output")
    echo "$output" >"$T/out.cfg"
    grub-script-check "$T/out.cfg"
}

@test "drop-in: the GRUB defaults choose root=, the kernel, the initrd and the options" {
    # Outside grub-mkconfig (no GRUB_DEVICE) the root is probed, as it does.
    printf '[[helpers]]\nvolume = "/"\ntargets = ["%s"]\n' "$T/boot" >"$T/host.toml"
    cat >>"$T/defaults" <<'DEFAULTS'
GRUB_DISTRIBUTOR=
GRUB_VOLWATCH_KERNEL=boot/vmlinuz
GRUB_VOLWATCH_INITRD=
GRUB_VOLWATCH_CMDLINE='volwatch.generation=$generation'
GRUB_DISABLE_LINUX_UUID=true
DEFAULTS
    run --separate-stderr "$DROPIN"
    [ "$status" -eq 0 ]
    [ -z "$stderr" ]
    [[ "${lines[0]}" == "menuentry 'GNU/Linux, from volwatch helper $T/boot' --class gnu-linux --class gnu --class os "* ]]
    [[ "$output" == *$'\tinsmod ext2\n'* ]]
    [[ "$output" == *$'\t\tlinux /volwatch/slot-$slot/boot/vmlinuz root=/dev/sda2 ro console=ttyS0 quiet volwatch.generation=$generation\n\telse'* ]]
    [[ "$output" != *initrd* ]]
    # A root= in the options (a ZFS root) replaces the probed one.
    printf 'GRUB_CMDLINE_LINUX="root=ZFS=rpool/ROOT/debian boot=zfs"\n' >>"$T/defaults"
    run --separate-stderr "$DROPIN"
    [ "$status" -eq 0 ]
    [[ "$output" == *$'\t\tlinux /volwatch/slot-$slot/boot/vmlinuz ro root=ZFS=rpool/ROOT/debian boot=zfs quiet volwatch.generation=$generation\n'* ]]
}

@test "drop-in: nothing, and exit 0, with no helper targets, when disabled, without vcheck, or with a bad host config" {
    printf 'discover = false\n' >"$T/host.toml"
    run --separate-stderr "$DROPIN"
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    [ -z "$stderr" ]
    printf '[[helpers]]\nvolume = "/"\ntargets = ["%s"]\n' "$T/esp1" >"$T/host.toml"
    printf 'GRUB_VOLWATCH_DISABLE=true\n' >>"$T/defaults"
    run --separate-stderr "$DROPIN"
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    sed -i '$d' "$T/defaults"
    VOLWATCH_VCHECK=$T/no-vcheck run --separate-stderr "$DROPIN"
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    # A broken host config must not make update-grub fail: one line, no entries.
    printf 'settle = 5\n' >"$T/host.toml"
    run --separate-stderr "$DROPIN"
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    [[ "$stderr" == "42_volwatch: no volwatch entries: vcheck: $T/host.toml:1: settle: "* ]]
    [ "${#stderr_lines[@]}" -eq 1 ]
}

@test "drop-in: a bad GRUB_VOLWATCH_KERNEL or GRUB_VOLWATCH_INITRD is one line and exit 78" {
    for setting in GRUB_VOLWATCH_KERNEL=../vmlinuz GRUB_VOLWATCH_KERNEL=/vmlinuz GRUB_VOLWATCH_KERNEL= "GRUB_VOLWATCH_INITRD='a b'"; do
        cp "$T/defaults" "$T/bad"
        echo "$setting" >>"$T/bad"
        VOLWATCH_GRUB_DEFAULTS=$T/bad run --separate-stderr "$DROPIN"
        [ "$status" -eq 78 ]
        [ -z "$output" ]
        [ "${#stderr_lines[@]}" -eq 1 ]
        [[ "$stderr" == "42_volwatch: GRUB_VOLWATCH_"*": a path inside the slot is needed"* ]]
    done
}

@test "standalone: a whole grub.cfg defaulting to the live slot, else the fallback; --output replaces the file atomically" {
    args=(--standalone UUID=A1B2-C3D4 --append 'root=UUID=5d2c console=ttyS0,115200 volwatch.generation=$generation'
          --fallback-kernel /fallback/vmlinuz --fallback-initrd /fallback/initrd.img)
    run --separate-stderr "$DROPIN" "${args[@]}"
    [ "$status" -eq 0 ]
    [ -z "$stderr" ]
    local access=$'insmod part_gpt\ninsmod part_msdos\ninsmod fat\nsearch --no-floppy --fs-uuid --set=root A1B2-C3D4'
    local options='ro console=ttyS0 quiet root=UUID=5d2c console=ttyS0,115200 volwatch.generation=$generation'
    expected=$(
        echo "# Written by 42_volwatch --standalone UUID=A1B2-C3D4: boots the helper set volwatch keeps on it."
        echo "# Do not edit: run 42_volwatch --standalone again (volwatch-grub(8))."
        echo "$access"
        echo "set timeout=5"
        live_body x | sed -n '1,7s/^\t//p'
        echo 'if [ -n "$slot" ]; then set default=0; else set default=1; fi'
        echo 'set fallback=1'
        echo "menuentry 'Debian GNU/Linux (volwatch)' --class debian --class gnu-linux --class gnu --class os --id 'volwatch-live' {"
        echo "$access" | sed 's/^/\t/'
        live_body "$options"
        echo "menuentry 'Debian GNU/Linux (fallback, before the first sync)' --class debian --class gnu-linux --class gnu --class os --id volwatch-fallback {"
        echo "$access" | sed 's/^/\t/'
        printf '\tslot=none\n\tgeneration=none\n\tlinux /fallback/vmlinuz %s\n\tinitrd /fallback/initrd.img\n}\n' "$options"
    )
    diff <(echo "$expected") <(echo "$output")
    echo "old" >"$T/esp1/grub.cfg"
    run --separate-stderr "$DROPIN" "${args[@]}" --output "$T/esp1/grub.cfg"
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    diff <(echo "$expected") "$T/esp1/grub.cfg"
    [ "$(ls -A "$T/esp1")" = grub.cfg ]
    grub-script-check "$T/esp1/grub.cfg"
}

@test "standalone: a directory target is probed; without a fallback the live entry is the only one" {
    run --separate-stderr "$DROPIN" --standalone "$T/esp1"
    [ "$status" -eq 0 ]
    [[ "$output" == *$'\ninsmod part_gpt\ninsmod fat\nsearch --no-floppy --fs-uuid --set=root A1B2-C3D4\n'* ]]
    [[ "$output" == *$'\nset default=0\n'* ]]
    [[ "$output" == *$'\t\tlinux /volwatch/slot-$slot/vmlinuz root=UUID=5d2c8a1e-4b7f ro console=ttyS0 quiet\n'* ]]
    [ "$(grep -c '^menuentry ' <<<"$output")" -eq 1 ]
    grub-script-check <<<"$output"
}

@test "bad arguments and unreachable targets: one line and the documented exit code, nothing written" {
    check() { # check STATUS MESSAGE ARGS...
        local want=$1 message=$2
        shift 2
        run --separate-stderr "$DROPIN" "$@"
        echo "$*: $status $stderr"
        [ "$status" -eq "$want" ]
        [ -z "$output" ]
        [ "$stderr" = "42_volwatch: $message" ]
    }
    run --separate-stderr "$DROPIN" --help
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "42_volwatch: GRUB menu entries that boot the kernel and initramfs volwatch" ]]
    [[ "$output" == *"42_volwatch --standalone TARGET [--output FILE]"* ]]
    check 64 "unknown argument '--bogus' (see volwatch-grub(8))" --bogus
    check 64 "--standalone needs a value" --standalone
    check 64 "--output and --fallback-* need --standalone" --output "$T/x.cfg"
    check 64 "--fallback-initrd needs --fallback-kernel" --standalone UUID=A1B2-C3D4 --fallback-initrd /i
    check 64 "fallback path 'fallback/vmlinuz' must start with / (a path on the target)" --standalone UUID=A1B2-C3D4 --fallback-kernel fallback/vmlinuz
    check 66 "$T/nowhere: no such directory" --standalone UUID=A1B2-C3D4 --output "$T/nowhere/grub.cfg"
    [ ! -e "$T/x.cfg" ]
    run --separate-stderr "$DROPIN" --standalone PARTUUID=0a1b
    [ "$status" -eq 66 ]
    [ "${stderr_lines[-1]}" = "42_volwatch: PARTUUID=0a1b: cannot find its file system for GRUB" ]
    run --separate-stderr "$DROPIN" --standalone "$T/esp2"
    [ "$status" -eq 66 ]
    [ "${stderr_lines[0]}" = "42_volwatch: $T/esp2: not a mounted file system (skipped)" ]
    VOLWATCH_GRUB_DEFAULTS=$T/none run --separate-stderr "$DROPIN"
    [ "$status" -eq 66 ]
    [ "$stderr" = "42_volwatch: $T/none: cannot be read" ]
}
