#!/bin/sh
# Builds the box's own kernel from Debian's linux-source package:
# "make tinyconfig" plus image/kernel/concierge.config, everything built
# in. Reproducible (fixed build time, user, host and build number).
#
#   image/kernel/build.sh CACHE
#
# writes CACHE/kernel-<source version>-<sum>/bzImage (and .config,
# release, source), where sum is the SHA-256 of the config fragment and
# this script, once: a second run with the same source and config does
# nothing. Prints that directory. The unpacked source is removed after
# the build (1.6 GB; unpacking again takes ~20 s).
set -eu
cache=$(realpath "$1")
self=$(realpath "$0")
here=$(dirname "$self")
frag=$here/concierge.config
pkg=linux-source-6.1

mkdir -p "$cache"
cd "$cache"
deb=$(ls ${pkg}_*.deb 2>/dev/null | sort -V | tail -n 1)
if [ -z "$deb" ]; then
	apt-get download $pkg >&2
	deb=$(ls ${pkg}_*.deb)
fi
ver=$(dpkg-deb -f "$deb" Version)
sum=$(cat "$frag" "$self" | sha256sum | cut -c1-12)
out=$cache/kernel-$ver-$sum
if [ -f "$out/bzImage" ]; then
	echo "$out"
	exit 0
fi

src=$cache/$pkg-$ver
if [ ! -f "$src/Makefile" ]; then
	rm -rf "$src.tmp"
	mkdir -p "$src.tmp"
	dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/src/$pkg.tar.xz | tar -xJ -C "$src.tmp" --strip-components=1
	rm -rf "$src"
	mv "$src.tmp" "$src"
fi

export ARCH=x86_64
export KBUILD_BUILD_TIMESTAMP="2020-01-01 00:00:00 UTC"
export KBUILD_BUILD_USER=concierge KBUILD_BUILD_HOST=concierge KBUILD_BUILD_VERSION=1
cd "$src"
make -s mrproper >&2
make -s tinyconfig >&2
scripts/kconfig/merge_config.sh -m .config "$frag" >&2
make -s olddefconfig >&2
# Every line of the fragment must have survived olddefconfig.
missing=$(grep '^CONFIG_' "$frag" | while read -r l; do grep -qxF "$l" .config || echo "$l"; done)
if [ -n "$missing" ]; then
	echo "build.sh: not in the resulting .config:" >&2
	echo "$missing" >&2
	exit 1
fi
make -s -j"$(nproc)" bzImage >&2
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
cp arch/x86/boot/bzImage .config "$out.tmp/"
make -s kernelrelease >"$out.tmp/release"
echo "$pkg $ver" >"$out.tmp/source"
mv "$out.tmp" "$out"
cd "$cache"
rm -rf "$src"
echo "$out"
