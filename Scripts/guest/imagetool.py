#!/usr/bin/env python3
"""Build-time helpers for Scripts/guest-image.sh (standard library only).

  imagetool.py extract-vmlinux BZIMAGE OUT   uncompressed ELF vmlinux from a bzImage
  imagetool.py has-pvh-note VMLINUX          exit 0 when the ELF has XEN_ELFNOTE_PHYS32_ENTRY
  imagetool.py modules MODDIR NAME...        print the .ko files to load, dependencies first

Why Python: the kernel's own scripts/extract-vmlinux needs the kernel tree, and the Debian
package ships no modules.dep (depmod writes it at install time, which we never do on the
host), so module dependencies are read from each module's .modinfo section instead.
"""
import lzma
import os
import struct
import subprocess
import sys
import zlib

# Compression magics the x86 boot code supports (scripts/extract-vmlinux), tried in turn.
MAGICS = [
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("gzip", b"\x1f\x8b\x08"),
    ("lzma", b"\x5d\x00\x00\x00"),
]


def decompress(kind, data):
    """Decompresses one stream starting at data[0]; trailing bytes are ignored."""
    if kind == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    if kind == "lzma":
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data)
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    if kind == "zstd":
        # No zstd in Python's standard library (before 3.14): the zstd tool reads the frame
        # and reports the trailing bytes as an error, after writing the whole frame.
        p = subprocess.run(["zstd", "-dcq"], input=data, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return p.stdout
    raise ValueError(kind)


def extract_vmlinux(src, dst):
    data = open(src, "rb").read()
    for kind, magic in MAGICS:
        start = 0
        while True:
            at = data.find(magic, start)
            if at < 0:
                break
            start = at + 1
            try:
                out = decompress(kind, data[at:])
            except (lzma.LZMAError, zlib.error, OSError):
                continue
            if out[:4] == b"\x7fELF":
                with open(dst, "wb") as f:
                    f.write(out)
                print(f"{kind} at offset {at}, {len(out)} bytes")
                return 0
    print(f"no compressed ELF kernel found in {src}", file=sys.stderr)
    return 1


def elf_sections(data):
    """Yields (name, type, offset, size) of a 64-bit little-endian ELF's sections."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = headers[shstrndx]
    for h in headers:
        name_at = strtab[4] + h[0]
        name = data[name_at:data.index(b"\x00", name_at)].decode()
        yield name, h[1], h[4], h[5]


def elf_notes(data):
    """Yields (owner, type, descriptor) of every note in the program's PT_NOTE segments."""
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        at, end = p_offset, p_offset + p_filesz
        while at + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, at)
            at += 12
            owner = data[at:at + namesz].rstrip(b"\x00")
            at += (namesz + 3) & ~3
            desc = data[at:at + descsz]
            at += (descsz + 3) & ~3
            yield owner, ntype, desc


def has_pvh_note(path):
    # XEN_ELFNOTE_PHYS32_ENTRY = 18: the 32-bit entry point QEMU's PVH loader jumps to.
    data = open(path, "rb").read()
    found = any(owner == b"Xen" and ntype == 18 for owner, ntype, _ in elf_notes(data))
    return 0 if found else 1


def module_name(filename):
    base = os.path.basename(filename)
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suffix):
            return base[: -len(suffix)].replace("-", "_")
    return None


def modinfo_depends(raw):
    """The `depends=` field of a module's .modinfo section (uncompressed bytes)."""
    for name, _, offset, size in elf_sections(raw):
        if name == ".modinfo":
            for field in raw[offset:offset + size].split(b"\x00"):
                if field.startswith(b"depends="):
                    return [d.replace("-", "_") for d in field[8:].decode().split(",") if d]
    return []


def read_module(path):
    data = open(path, "rb").read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dcq", path], stdout=subprocess.PIPE, check=True).stdout
    return data


def modules(moddir, wanted):
    """Prints `NAME PATH` per module to load (dependencies first) and `builtin NAME` or
    `absent NAME` for the others, so the caller can say what it did."""
    files = {}
    for root, _, names in os.walk(os.path.join(moddir, "kernel")):
        for n in names:
            m = module_name(n)
            if m:
                files[m] = os.path.join(root, n)
    builtin = set()
    try:
        for line in open(os.path.join(moddir, "modules.builtin")):
            m = module_name(line.strip())
            if m:
                builtin.add(m)
    except FileNotFoundError:
        pass
    order, seen = [], set()

    def visit(m):
        if m in seen:
            return
        seen.add(m)
        if m in builtin:
            print(f"builtin {m}")
            return
        if m not in files:
            print(f"absent {m}")
            return
        for d in modinfo_depends(read_module(files[m])):
            visit(d)
        order.append(m)
        print(f"{m} {files[m]}")

    for m in wanted:
        visit(m.replace("-", "_"))
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "extract-vmlinux":
        return extract_vmlinux(argv[2], argv[3])
    if len(argv) == 3 and argv[1] == "has-pvh-note":
        return has_pvh_note(argv[2])
    if len(argv) >= 3 and argv[1] == "modules":
        return modules(argv[2], argv[3:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
