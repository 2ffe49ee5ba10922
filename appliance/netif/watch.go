package netif

import (
	"github.com/vishvananda/netlink"
)

// Watch subscribes to the kernel's reports of interfaces coming up or
// going down and of addresses added or removed (rtnetlink), until done is
// closed. The channel it returns holds one value after any report, so a
// burst of changes wakes the reader once, and it is closed when done is
// closed or the subscription fails; a reader that must not miss a change
// should then look at the interfaces on a timer instead.
func Watch(done <-chan struct{}) (<-chan struct{}, error) {
	addrs := make(chan netlink.AddrUpdate, 16)
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{}); err != nil {
		return nil, err
	}
	links := make(chan netlink.LinkUpdate, 16)
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{}); err != nil {
		// The address subscription ends with done; drain it till then.
		go func() {
			for range addrs {
			}
		}()
		return nil, err
	}
	changed := make(chan struct{}, 1)
	go func() {
		// Both subscriptions are read until they are closed, so that
		// neither is left blocked on a send after done; changed is
		// closed as soon as either ends, as then changes can be missed.
		open := true
		for addrs != nil || links != nil {
			select {
			case _, ok := <-addrs:
				if !ok {
					addrs = nil
				}
			case _, ok := <-links:
				if !ok {
					links = nil
				}
			}
			switch {
			case !open:
			case addrs == nil || links == nil:
				close(changed)
				open = false
			default:
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		}
	}()
	return changed, nil
}
