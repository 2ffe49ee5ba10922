// Package image is the host-side firmware builder ("make image"): it is
// never linked into the box's binary. Its subpackages write the pieces of
// a firmware bundle and of a fresh-install disk image:
//
//   - initramfs: a reproducible gzip'd newc (cpio) archive;
//   - kernel: the box's own kernel (build.sh, concierge.config), built
//     from Debian's linux-source with everything built in;
//   - kmod: the kernel modules the box needs from Debian's kernel
//     (mkimage -kernel debian), resolved from .modinfo;
//   - disk: a GPT disk with an EFI system partition (FAT16, slots A and
//     B and systemd-boot) and an ext4 data partition;
//   - cmd/mkimage: the command that builds (or fetches) the kernel and
//     puts it all together.
//
// The manifest and its signature are in internal/firmware, which the box
// uses to verify a bundle before it installs it.
package image
