package dhcpd

import "time"

// Defaults and limits of the DHCP server, in one place: the appliance's
// configuration reads its defaults from here.
const (
	// DefaultLeaseTime is the lease given to a client (RFC 2131 3.3).
	DefaultLeaseTime = 12 * time.Hour
	// MinLeaseTime and MaxLeaseTime bound the configurable lease time.
	MinLeaseTime = 2 * time.Minute
	MaxLeaseTime = 30 * 24 * time.Hour

	// DefaultOfferHold is how long an offered address stays set aside
	// for the client it was offered to, waiting for its REQUEST.
	DefaultOfferHold = 30 * time.Second
	// DefaultDeclineHold is how long an address a client DECLINEd (or a
	// probe found in use) is kept out of the pool (RFC 2131 3.1 step 5).
	DefaultDeclineHold = 10 * time.Minute

	// DefaultProbeTimeout bounds the wait for an answer to the ICMP echo
	// sent to an address before it is first offered (RFC 2131 2.2).
	DefaultProbeTimeout = 500 * time.Millisecond
	MaxProbeTimeout     = 5 * time.Second
	// MaxProbeTries is how many fresh addresses one DISCOVER may probe
	// before the server gives up for that packet.
	MaxProbeTries = 3

	// DefaultCommitWindow is the group-commit window of the lease file: a
	// lease that must be durable before its ACK waits at most this long
	// for others to share the same write.
	DefaultCommitWindow = 100 * time.Millisecond
	// DefaultLazyWrite is how long changes that need not be durable at
	// once (RELEASE, DECLINE, expiry) may wait before they are written.
	DefaultLazyWrite = 5 * time.Minute

	// DefaultRateLimit is the packets per second accepted from one client
	// (by hardware address), DefaultRateBurst how many may come at once.
	DefaultRateLimit = 4
	DefaultRateBurst = 16
	// MaxInFlight bounds the packets handled at once; more are dropped.
	MaxInFlight = 256
	// maxRateClients bounds the rate limiter's table of clients.
	maxRateClients = 8192

	// MaxPoolSize is the most addresses a pool may hold.
	MaxPoolSize = 65536

	// DefaultDetectWindow is how long enabling the server listens for
	// answers from other DHCP servers to its probe DISCOVER.
	DefaultDetectWindow = 2 * time.Second

	// NodeTypeH is NetBIOS node type H (hybrid: WINS first, then
	// broadcast), the value of option 46 (RFC 2132 8.7, RFC 1001 10).
	NodeTypeH = 0x08

	// maxPacket is the largest DHCP packet read.
	maxPacket = 1500
)
