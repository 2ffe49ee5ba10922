package config

import (
	"strings"
	"time"

	"concierge/nbt/nameservice"
)

// NBT holds the NetBIOS name service settings.
type NBT struct {
	// Enabled turns the NetBIOS services on.
	Enabled bool `json:"enabled"`
	// Name is the box's NetBIOS name (up to 15 characters).
	Name string `json:"name"`
	// Workgroup is the box's NetBIOS workgroup.
	Workgroup string `json:"workgroup"`
	// Comment describes the box to Windows PCs (the server comment of
	// browse announcements, RFC 1002 and MS-BRWS: at most 43 characters
	// of printable ASCII). It is kept for the browse service; the name
	// service does not send it.
	Comment string `json:"comment"`
	// Scope is the NetBIOS scope ID; almost every network leaves it
	// empty.
	Scope string `json:"scope"`
	// Interfaces are the LAN interfaces; empty means every IPv4
	// interface that is up and has a broadcast address.
	Interfaces []string `json:"interfaces"`
	// WINSServer makes the box the LAN's WINS server (NBNS).
	WINSServer bool `json:"wins_server"`
	// AllowRemote answers queries and registrations from outside the
	// LAN subnets (routed networks). Default off.
	AllowRemote bool `json:"allow_remote"`
	// NameTTL is the TTL given with the box's own names.
	NameTTL Duration `json:"name_ttl"`
	// WINSMinTTL and WINSMaxTTL bound the TTL granted to a WINS
	// registration (a request for an infinite TTL gets the maximum); a
	// name that is not refreshed within it is dropped.
	WINSMinTTL Duration `json:"wins_min_ttl"`
	WINSMaxTTL Duration `json:"wins_max_ttl"`
	// WINSMaxNamesPerOwner is how many names one address may hold in the
	// WINS table (a PC registers about 5 to 10); more are refused, so
	// that one host cannot fill the table.
	WINSMaxNamesPerOwner int `json:"wins_max_names_per_owner"`
	// StateFile, in the data directory, keeps the WINS table across
	// restarts; it is written at most once per SaveInterval (and at
	// shutdown), only when it changed, to spare the flash.
	StateFile    string   `json:"state_file"`
	SaveInterval Duration `json:"save_interval"`
	// RateLimit is the packets per second accepted from one address,
	// RateBurst how many may come at once.
	RateLimit int `json:"rate_limit"`
	RateBurst int `json:"rate_burst"`
	// ChallengeTimeout is how long the owner of a name has to answer when
	// another node registers the name (two tries).
	ChallengeTimeout Duration `json:"challenge_timeout"`

	// The session (139/tcp) and datagram (138/udp) services: see
	// nbtsession.go.
	NBTSessions
	// The browse announcements: see nbtbrowse.go.
	NBTBrowse
	// The datagram service's reassembly bounds: see nbtdatagram.go.
	NBTDatagram
}

// DefaultNBT returns the NetBIOS defaults: the box's names and files
// here, the service's own from nameservice, where they are written once.
func DefaultNBT() NBT {
	return NBT{
		Enabled:              true,
		Name:                 "CONCIERGE",
		Workgroup:            "WORKGROUP",
		WINSServer:           true,
		NameTTL:              Duration(nameservice.DefaultNameTTL),
		WINSMinTTL:           Duration(nameservice.DefaultWINSMinTTL),
		WINSMaxTTL:           Duration(nameservice.DefaultWINSMaxTTL),
		WINSMaxNamesPerOwner: nameservice.DefaultMaxNamesPerOwner,
		StateFile:            "nbt-wins.json",
		SaveInterval:         Duration(nameservice.DefaultSaveInterval),
		RateLimit:            nameservice.DefaultRateLimit,
		RateBurst:            nameservice.DefaultRateBurst,
		ChallengeTimeout:     Duration(nameservice.DefaultChallengeTimeout),
		NBTSessions:          defaultNBTSessions(),
		NBTBrowse:            defaultNBTBrowse(),
		NBTDatagram:          defaultNBTDatagram(),
	}
}

// MaxNBTComment is the longest server comment of a browse announcement
// (MS-BRWS 2.2.1: 43 bytes and a NUL).
const MaxNBTComment = 43

// netbiosBad are characters Windows does not allow in NetBIOS names.
const netbiosBad = "\\/:*?\"<>|.,;=+[] "

func checkNetBIOSName(v string) string {
	if len(v) == 0 || len(v) > 15 {
		return "must be 1 to 15 characters"
	}
	for _, c := range []byte(v) {
		if c < 0x21 || c > 0x7e || strings.IndexByte(netbiosBad, c) >= 0 {
			return "may hold letters, digits and - _ ! @ # $ % ^ & ( ) ' { } ~ only"
		}
	}
	return ""
}

func (s *NBT) validate(p string) Errors {
	var errs Errors
	if m := checkNetBIOSName(s.Name); m != "" {
		errs = append(errs, fieldErr(p+".name", "%s, not %q", m, s.Name))
	}
	if m := checkNetBIOSName(s.Workgroup); m != "" {
		errs = append(errs, fieldErr(p+".workgroup", "%s, not %q", m, s.Workgroup))
	}
	if len(s.Comment) > MaxNBTComment || strings.IndexFunc(s.Comment, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		errs = append(errs, fieldErr(p+".comment", "must be at most %d characters of plain ASCII text (letters, digits, spaces, punctuation)", MaxNBTComment))
	}
	if s.Scope != "" {
		ok := len(s.Scope) <= 200
		for _, l := range strings.Split(s.Scope, ".") {
			if l == "" || len(l) > 63 || strings.Trim(l, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
				ok = false
			}
		}
		if !ok {
			errs = append(errs, fieldErr(p+".scope", "%q is not a scope ID like office.example (labels of letters, digits and -)", s.Scope))
		}
	}
	for i, n := range s.Interfaces {
		if n == "" || len(n) > 15 || strings.ContainsAny(n, "/ \t") {
			errs = append(errs, fieldErr(p+".interfaces["+itoa(i)+"]", "%q is not an interface name", n))
		}
	}
	durs := []struct {
		f        string
		v        Duration
		min, max time.Duration
	}{
		{"name_ttl", s.NameTTL, time.Minute, 30 * 24 * time.Hour},
		{"wins_min_ttl", s.WINSMinTTL, time.Second, 30 * 24 * time.Hour},
		{"wins_max_ttl", s.WINSMaxTTL, time.Second, 30 * 24 * time.Hour},
		{"save_interval", s.SaveInterval, time.Second, 24 * time.Hour},
		{"challenge_timeout", s.ChallengeTimeout, 100 * time.Millisecond, 10 * time.Second},
	}
	for _, d := range durs {
		if d.v.D() < d.min || d.v.D() > d.max {
			errs = append(errs, fieldErr(p+"."+d.f, "must be between %s and %s, not %s", d.min, d.max, d.v))
		}
	}
	if s.WINSMaxTTL < s.WINSMinTTL {
		errs = append(errs, fieldErr(p+".wins_max_ttl", "%s is shorter than wins_min_ttl %s", s.WINSMaxTTL, s.WINSMinTTL))
	}
	if s.StateFile == "" || strings.ContainsAny(s.StateFile, "/\x00") || strings.HasPrefix(s.StateFile, ".") {
		errs = append(errs, fieldErr(p+".state_file", "%q must be a plain file name in the data directory", s.StateFile))
	}
	if s.RateLimit < 1 || s.RateLimit > 10_000_000 {
		errs = append(errs, fieldErr(p+".rate_limit", "must be between 1 and 10000000 packets per second, not %d", s.RateLimit))
	}
	if s.WINSMaxNamesPerOwner < 1 || s.WINSMaxNamesPerOwner > nameservice.DefaultMaxNames {
		errs = append(errs, fieldErr(p+".wins_max_names_per_owner", "must be between 1 and %d, not %d", nameservice.DefaultMaxNames, s.WINSMaxNamesPerOwner))
	}
	if s.RateBurst < 1 || s.RateBurst > 10_000_000 {
		errs = append(errs, fieldErr(p+".rate_burst", "must be between 1 and 10000000, not %d", s.RateBurst))
	}
	errs = append(errs, s.NBTSessions.validate(p, s.Scope)...)
	errs = append(errs, s.NBTBrowse.validate(p)...)
	errs = append(errs, s.NBTDatagram.validate(p)...)
	return errs
}
