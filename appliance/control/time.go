package control

import "context"

// The time op.
const (
	// OpTimeStatus: whether the clock is synchronized, with which server,
	// the offset, stratum, last sync and last error (server only).
	OpTimeStatus = "time.status" // → timesync.Status
)

func init() {
	register(map[string]opDef{
		OpTimeStatus: {live: true, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.opt.Live.TimeStatus(), nil
		}},
	})
}
