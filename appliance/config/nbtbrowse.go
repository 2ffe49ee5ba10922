package config

import (
	"time"

	"concierge/nbt/browse"
)

// NBTBrowse are the settings of the browse announcements (MS-BRWS), part
// of the nbt section: the box sends Host Announcements so that it shows
// in the workgroup's list of computers.
type NBTBrowse struct {
	// BrowseAnnounce turns the Host Announcements on.
	BrowseAnnounce bool `json:"browse_announce"`
	// BrowsePeriod is the time from the first announcement to the
	// second; it doubles after each up to BrowseMaxPeriod (1 and 12
	// minutes, as Windows does).
	BrowsePeriod    Duration `json:"browse_period"`
	BrowseMaxPeriod Duration `json:"browse_max_period"`
	// BrowseReplyDelay bounds the random delay before the answer to an
	// Announcement Request.
	BrowseReplyDelay Duration `json:"browse_reply_delay"`
}

func defaultNBTBrowse() NBTBrowse {
	return NBTBrowse{
		BrowseAnnounce:   true,
		BrowsePeriod:     Duration(browse.DefaultFirstPeriod),
		BrowseMaxPeriod:  Duration(browse.DefaultMaxPeriod),
		BrowseReplyDelay: Duration(browse.DefaultReplyDelay),
	}
}

func (s *NBTBrowse) validate(p string) Errors {
	var errs Errors
	for _, d := range []struct {
		f        string
		v        Duration
		min, max time.Duration
	}{
		{"browse_period", s.BrowsePeriod, 10 * time.Millisecond, time.Hour},
		{"browse_max_period", s.BrowseMaxPeriod, 10 * time.Millisecond, time.Hour},
		{"browse_reply_delay", s.BrowseReplyDelay, time.Millisecond, time.Minute},
	} {
		if d.v.D() < d.min || d.v.D() > d.max {
			errs = append(errs, fieldErr(p+"."+d.f, "must be between %s and %s, not %s", d.min, d.max, d.v))
		}
	}
	if s.BrowseMaxPeriod < s.BrowsePeriod {
		errs = append(errs, fieldErr(p+".browse_max_period", "%s is shorter than browse_period %s", s.BrowseMaxPeriod, s.BrowsePeriod))
	}
	return errs
}
