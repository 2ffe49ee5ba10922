package spin

import (
	"testing"
	"time"
)

// TestSpinner: a reader polls after answering only while requests follow
// their answers within Gap; one requester at a time (a round trip of tens
// of µs) makes it sleep in the poller instead of spinning.
func TestSpinner(t *testing.T) {
	run := func(gap time.Duration) (polled int) {
		var s Spinner
		now := time.Millisecond
		for range 50 {
			s.answered(now)
			if s.poll(now + time.Microsecond) {
				polled++
			}
			now += gap
			s.arrived(now)
		}
		return polled
	}
	if p := run(2 * time.Microsecond); p < 45 {
		t.Errorf("requests 2µs after the answers: polled after %d of 50 batches, want nearly all", p)
	}
	if p := run(40 * time.Microsecond); p > 10 {
		t.Errorf("requests 40µs after the answers: polled after %d of 50 batches, want only the first few", p)
	}
	var s Spinner
	if s.poll(time.Second) {
		t.Error("polls before answering")
	}
	s.answered(time.Second)
	if s.poll(time.Second + For) {
		t.Error("polls after For")
	}
}
