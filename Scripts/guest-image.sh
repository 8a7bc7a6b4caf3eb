#!/usr/bin/env bash
# Builds (once, then from cache) the default QEMU guest image: Debian's kernel plus a small
# busybox initramfs whose /init (Scripts/guest/init) configures the NICs from the kernel
# command line and prints a READY marker on the serial console.
#
#   Scripts/guest-image.sh [OUT_DIR]      default OUT_DIR: /var/cache/tapestry/guest-image
#
# Output directory: `vmlinux` (uncompressed, booted through PVH) or `bzImage` (fallback),
# `initramfs.cpio.gz`, `kernel-version`, and `stamp` (sha256 of this script, Scripts/guest/*,
# the kernel package and version and the busybox version: any change rebuilds);
# `apt-resolved` remembers which packages apt offered, until its package lists change. On success
# stdout carries exactly four `key=value` lines for the caller (VMRunner's GuestImage):
#   kernel=PATH  initrd=PATH  boot=pvh|bzimage  version=KERNEL_RELEASE
# Progress and warnings go to stderr.
#
# Everything comes from Debian packages through apt: the kernel package is downloaded and
# unpacked with `dpkg -x` into a temporary directory, never installed (the host's /boot and
# kernel are never touched). busybox-static is downloaded the same way rather than installed:
# on Debian it conflicts with the `busybox` package that initramfs-tools pulls in, and the
# image needs the static binary whatever the host has.
#
# Why vmlinux: under TCG the decompressor of a bzImage runs emulated and costs ~5 s of a
# ~9.5 s boot; QEMU boots an uncompressed ELF vmlinux directly through its PVH entry point
# (the XEN_ELFNOTE_PHYS32_ENTRY note, present in Debian's kernel: CONFIG_PVH=y) in ~4.5 s.
#
# Kernel choice: the package that Debian's `linux-image-amd64` meta package depends on (the
# release's default, supported kernel), or $TAPESTRY_GUEST_KERNEL_PACKAGE when set (e.g.
# linux-image-6.12.117+deb12-amd64 from the 6.12 line).
#
# After building, the image is boot-checked once under TCG (no NICs; the READY marker must
# appear): if the vmlinux does not boot through PVH, the bzImage is used and this says so.
# TAPESTRY_GUEST_IMAGE_VERIFY=0 skips the check.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-/var/cache/tapestry/guest-image}
guest=$here/guest
say() { echo "guest-image: $*" >&2; }
die() { say "error: $*"; exit 1; }

# Host tools: command → Debian package. qemu is not needed to build, but to boot-check the
# image and to run guests at all.
declare -A tools=([cpio]=cpio [gzip]=gzip [python3]=python3 [zstd]=zstd [xz]=xz-utils
                  [qemu-system-x86_64]=qemu-system-x86 [flock]=util-linux [apt-get]=apt [dpkg]=dpkg)
missing=()
for t in "${!tools[@]}"; do command -v "$t" >/dev/null || missing+=("${tools[$t]}"); done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing tools; install: apt-get install ${missing[*]}"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
fi

mkdir -p "$out" || die "cannot create $out"
# One builder at a time (two `tapestry up` starting together share the result).
exec 9>"$out/.lock"
flock 9

# --- What to build from -----------------------------------------------------------------
kernel_package() {
    if [ -n "${TAPESTRY_GUEST_KERNEL_PACKAGE:-}" ]; then echo "$TAPESTRY_GUEST_KERNEL_PACKAGE"; return; fi
    apt-cache depends linux-image-amd64 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[^ ]*-amd64\)$/\1/p' | head -1
}
candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '(none)' || true; }

# apt-cache takes ~1 s per call: the resolution is remembered until apt's package lists (or
# the override) change.
apt_key=$( { echo "${TAPESTRY_GUEST_KERNEL_PACKAGE:-}"; stat -c '%n %Y %s' /var/lib/apt/lists/* 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)
pkg= kver= bbver=
if [ "$(sed -n 1p "$out/apt-resolved" 2>/dev/null)" = "$apt_key" ]; then
    read -r pkg kver bbver < <(sed -n 2p "$out/apt-resolved") || true
fi
if [ -z "$pkg" ] || [ -z "$kver" ] || [ -z "$bbver" ]; then
    pkg=$(kernel_package)
    kver=$(candidate "${pkg:-none}")
    bbver=$(candidate busybox-static)
    if [ -z "$pkg" ] || [ -z "$kver" ] || [ -z "$bbver" ]; then
        # A fresh container has no package lists yet.
        apt-get update -qq >&2 || true
        pkg=$(kernel_package)
        kver=$(candidate "${pkg:-none}")
        bbver=$(candidate busybox-static)
        apt_key=$( { echo "${TAPESTRY_GUEST_KERNEL_PACKAGE:-}"; stat -c '%n %Y %s' /var/lib/apt/lists/* 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)
    fi
    [ -n "$pkg" ] && [ -n "$kver" ] && [ -n "$bbver" ] && printf '%s\n%s %s %s\n' "$apt_key" "$pkg" "$kver" "$bbver" >"$out/apt-resolved"
fi
have_image() { { [ -f "$out/vmlinux" ] || [ -f "$out/bzImage" ]; } && [ -f "$out/initramfs.cpio.gz" ] && [ -f "$out/kernel-version" ]; }
report() {
    local kernel=$out/vmlinux boot=pvh
    [ -f "$kernel" ] || { kernel=$out/bzImage; boot=bzimage; }
    echo "kernel=$kernel"
    echo "initrd=$out/initramfs.cpio.gz"
    echo "boot=$boot"
    echo "version=$(cat "$out/kernel-version")"
}
if [ -z "$pkg" ] || [ -z "$kver" ] || [ -z "$bbver" ]; then
    # No apt metadata (offline): an image built earlier is still good.
    have_image && { say "warning: apt has no kernel or busybox-static candidate; using the cached image"; report; exit 0; }
    die "apt knows no kernel package (linux-image-amd64 → ${pkg:-?}) or busybox-static; check /etc/apt/sources.list"
fi

stamp=$( { cat "$0" "$guest"/*; echo "kernel=$pkg $kver"; echo "busybox=$bbver"; } | sha256sum | cut -d' ' -f1)
if have_image && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
    report
    exit 0
fi

# --- Build ------------------------------------------------------------------------------
say "building guest image (first use, ~20 s): $pkg $kver, busybox-static $bbver"
started=$(date +%s)
tmp=$(mktemp -d /tmp/tapestry-guest-image.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

# APT::Sandbox::User=root: the temporary directory is not writable by apt's `_apt` user.
if ! apt-get -q -o APT::Sandbox::User=root download "$pkg" busybox-static >download.log 2>&1; then
    if have_image; then
        say "warning: cannot download $pkg (offline?); keeping the cached image"
        tail -3 download.log >&2
        report
        exit 0
    fi
    tail -5 download.log >&2
    die "apt-get download $pkg busybox-static failed"
fi
dpkg -x "$(ls "${pkg}"_*.deb | head -1)" kernel
dpkg -x "$(ls busybox-static_*.deb | head -1)" busybox

vmlinuz=$(ls kernel/boot/vmlinuz-* 2>/dev/null | head -1)
[ -n "$vmlinuz" ] || die "$pkg has no /boot/vmlinuz-*"
release=${vmlinuz##*/vmlinuz-}
moddir=kernel/lib/modules/$release
[ -d "$moddir" ] || moddir=kernel/usr/lib/modules/$release
[ -d "$moddir" ] || die "$pkg has no modules directory for $release"

# Kernel: vmlinux for PVH when it can be extracted and carries the PVH note.
kernel_file=bzImage
if python3 "$guest/imagetool.py" extract-vmlinux "$vmlinuz" vmlinux >extract.log 2>&1; then
    if python3 "$guest/imagetool.py" has-pvh-note vmlinux; then
        kernel_file=vmlinux
    else
        say "warning: the extracted vmlinux has no PVH entry note; falling back to bzImage (slower boot under TCG)"
    fi
else
    say "warning: cannot extract vmlinux from $vmlinuz ($(tail -1 extract.log)); falling back to bzImage (slower boot under TCG)"
fi
cp "$vmlinuz" bzImage

# Initramfs: busybox, its applet links, the NIC modules and /init.
root=$tmp/root
mkdir -p "$root"/{bin,sbin,etc/tapestry,etc/acpi/PWRF,lib/modules,proc,sys,dev,tmp,run,root}
cp busybox/bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$guest/init" "$root/init"
install -m 0755 "$guest/poweroff-button" "$root/etc/acpi/PWRF/00000080"
install -m 0755 "$guest/dhcp-script" "$root/etc/tapestry/dhcp-script"

# Copies the modules NAME... (dependencies first) into the initramfs and lists them in LIST.
add_modules() {
    local list=$1; shift
    : >"$list"
    while read -r name path; do
        case "$name" in
            builtin) continue ;;
            absent) say "module $path: not in $pkg (skipped)"; continue ;;
        esac
        # Decompressed here so the guest's insmod needs no decompressor.
        case "$path" in
            *.xz) xz -dc "$path" ;;
            *.zst) zstd -dcq "$path" ;;
            *.gz) gzip -dc "$path" ;;
            *) cat "$path" ;;
        esac >"$root/lib/modules/$name.ko"
        echo "$name $name.ko" >>"$list"
    done < <(python3 "$guest/imagetool.py" modules "$moddir" "$@")
}
# At boot: virtio-net and its dependencies, in the documented load order; button + evdev so
# acpid sees the ACPI power button; pvpanic-mmio so a guest panic makes QEMU exit with a
# failure status. On demand: 8021q (and garp, mrp, stp, llc), loaded by /init only when a
# VLAN sub-interface is asked for: its five modules cost ~0.4 s of a TCG boot.
add_modules "$root/etc/tapestry/modules" virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev \
    virtio_pci failover net_failover virtio_net button evdev pvpanic_mmio
add_modules "$root/etc/tapestry/modules-vlan" 8021q
# On demand: the fw_cfg sysfs driver, loaded by /init when the network configuration comes
# through QEMU's fw_cfg device (tapestry.net=fw_cfg).
add_modules "$root/etc/tapestry/modules-fwcfg" qemu_fw_cfg
grep -q '^virtio_net ' "$root/etc/tapestry/modules" \
    || python3 "$guest/imagetool.py" modules "$moddir" virtio_net | grep -q '^builtin' \
    || die "$pkg has no virtio_net driver"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 >initramfs.cpio.gz

# --- Boot check -------------------------------------------------------------------------
# Boots KERNEL with the initramfs under TCG, no NICs; succeeds when /init prints READY.
boots() {
    local log=$tmp/boot-$1.log pid deadline
    qemu-system-x86_64 -name tapestry-image-check -machine pc -accel tcg -m 256 -nodefaults \
        -no-user-config -display none -kernel "$1" -initrd initramfs.cpio.gz \
        -append "console=ttyS0 quiet panic=-1 tapestry.hostname=image-check" \
        -serial "file:$log" -action panic=exit-failure -device pvpanic >/dev/null 2>&1 &
    pid=$!
    deadline=$(( $(date +%s) + 120 ))
    while [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$pid" 2>/dev/null; do
        if grep -q 'TAPESTRY-GUEST-READY' "$log" 2>/dev/null; then
            kill "$pid"; wait "$pid" 2>/dev/null || true
            return 0
        fi
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    say "$1 did not boot to READY; last console lines:"
    tail -15 "$log" >&2 || true
    return 1
}
if [ "${TAPESTRY_GUEST_IMAGE_VERIFY:-1}" != 0 ]; then
    if [ "$kernel_file" = vmlinux ] && ! boots vmlinux; then
        say "warning: PVH boot of vmlinux failed; falling back to bzImage (slower boot under TCG)"
        kernel_file=bzImage
    fi
    [ "$kernel_file" = vmlinux ] || boots bzImage || die "the guest image does not boot (see the console lines above)"
fi

# --- Install into the cache (stamp last: an interrupted build is rebuilt) ---------------
rm -f "$out/stamp" "$out/vmlinux" "$out/bzImage"
cp "$kernel_file" "$out/$kernel_file.tmp" && mv "$out/$kernel_file.tmp" "$out/$kernel_file"
cp initramfs.cpio.gz "$out/initramfs.cpio.gz.tmp" && mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
echo "$release" >"$out/kernel-version"
echo "$stamp" >"$out/stamp"
say "built $out/$kernel_file ($release) and initramfs.cpio.gz in $(( $(date +%s) - started )) s"
report
