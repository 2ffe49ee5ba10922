// Package qemu starts the firmware image in QEMU the way the image tests
// and the firmware benchmark do: UEFI (OVMF) from the disk image, TCG,
// user-mode networking with host forwards on 127.0.0.1, meant to run in a
// network namespace that has nothing but loopback (see docs/firmware.md,
// "The boot test's network").
package qemu

import "os/exec"

const (
	// OVMF is the UEFI firmware that runs systemd-boot from the image.
	OVMF = "/usr/share/ovmf/OVMF.fd"
	// GuestIP is the box's first-setup address (appliance/boot.DefaultAddress).
	GuestIP = "192.168.1.250"
)

// Forward is a host forward from 127.0.0.1 to the guest.
type Forward string

// TCP and UDP forward 127.0.0.1:host to the guest's port guest.
func TCP(host, guest string) Forward { return forward("tcp", host, guest) }
func UDP(host, guest string) Forward { return forward("udp", host, guest) }

func forward(proto, host, guest string) Forward {
	return Forward(",hostfwd=" + proto + ":127.0.0.1:" + host + "-" + GuestIP + ":" + guest)
}

// Command returns QEMU booting disk with memory MB, run with "ip netns
// exec ns" (the namespace must exist, with its loopback up). The disk is
// written through (cache=writethrough): a killed VM keeps what the guest
// wrote.
func Command(ns, memory, disk string, fwds ...Forward) *exec.Cmd {
	nic := "user,model=virtio-net-pci,net=192.168.1.0/24,host=192.168.1.1"
	for _, f := range fwds {
		nic += string(f)
	}
	return exec.Command("ip", "netns", "exec", ns, "qemu-system-x86_64", "-accel", "tcg", "-m", memory,
		"-nographic", "-bios", OVMF,
		"-drive", "file="+disk+",format=raw,if=virtio,cache=writethrough", "-nic", nic)
}
