#!/usr/bin/env python3
"""image/kernel-image.py VMLINUZ IMAGE: the uncompressed arm64 kernel Image.

U-Boot's booti takes the raw arm64 Image (Linux Documentation/arch/arm64/
booting.rst: "ARM\\x64" magic at offset 56). Debian's /boot/vmlinuz-* for
arm64 is either that Image gzip-compressed, or an EFI "zboot" image (a PE
file whose header says where its compressed payload is and how it is
compressed: drivers/firmware/efi/libstub/zboot-header.S). Both are handled;
the result is checked for the arm64 Image magic.
"""
import gzip
import lzma
import struct
import subprocess
import sys


def payload(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    # zboot: "MZ", then "zimg" at 4, payload offset and size at 8 and 12 (le32),
    # the compression name (NUL-padded) at 24.
    if data[:2] == b"MZ" and data[4:8] == b"zimg":
        off, size = struct.unpack_from("<II", data, 8)
        comp = data[24:56].split(b"\0", 1)[0].decode()
        blob = data[off:off + size]
        if comp == "gzip":
            return gzip.decompress(blob)
        if comp in ("xzkern", "xz"):
            return lzma.decompress(blob)
        if comp == "zstd22" or comp == "zstd":
            return subprocess.run(["zstd", "-dc"], input=blob, stdout=subprocess.PIPE, check=True).stdout
        raise SystemExit(f"kernel-image: zboot compression {comp!r} not handled")
    return data


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        image = payload(f.read())
    if image[56:60] != b"ARM\x64":
        raise SystemExit(f"kernel-image: {src} does not give an arm64 Image (no ARM\\x64 magic)")
    with open(dst, "wb") as f:
        f.write(image)


if __name__ == "__main__":
    main()
