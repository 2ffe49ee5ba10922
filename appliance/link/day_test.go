package link

import (
	"context"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// officeDay is a scripted day of outbound mail: n messages between 08:00
// and 18:00, busier in the morning and after lunch, from a fixed seed.
func officeDay(day time.Time, n int) []time.Time {
	r := rand.New(rand.NewPCG(12, 1985))
	peaks := []struct{ from, to time.Duration }{
		{8 * time.Hour, 12 * time.Hour}, {8*time.Hour + 30*time.Minute, 11 * time.Hour},
		{13 * time.Hour, 18 * time.Hour}, {14 * time.Hour, 16 * time.Hour},
	}
	var out []time.Time
	for i := range n {
		p := peaks[i%len(peaks)]
		out = append(out, day.Add(p.from+time.Duration(r.Int64N(int64(p.to-p.from)))))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// dayResult is what a simulated day cost: link-ups, time up, and how long
// outbound messages waited for the link.
type dayResult struct {
	linkUps           int
	upTime            time.Duration
	meanWait, maxWait time.Duration
}

// simulateDay runs a Manager over a day on a simulated clock, one step a
// second, with no commands and no mail host (the link comes up at once):
// messages arrive as scripted, wait while the link is down, and go out
// when it is up (each keeps the link busy as a delivery does).
func simulateDay(set Settings, day time.Time, msgs []time.Time) dayResult {
	now := day
	m := New(set, nil, nil)
	m.Now = func() time.Time { return now }
	var res dayResult
	var waiting []time.Time
	var total time.Duration
	send := func() {
		for _, at := range waiting {
			w := now.Sub(at)
			total += w
			res.maxWait = max(res.maxWait, w)
			m.Outbound(1, 2000)
		}
		waiting = waiting[:0]
	}
	m.OnUp = func() {
		res.linkUps++
		send()
	}
	ctx := context.Background()
	next := 0
	for ; now.Before(day.Add(24 * time.Hour)); now = now.Add(time.Second) {
		for next < len(msgs) && !msgs[next].After(now) {
			waiting = append(waiting, msgs[next])
			next++
			m.MailWaiting()
		}
		if m.IsUp() {
			send()
			res.upTime += time.Second
		}
		m.step(ctx)
	}
	res.meanWait = total / time.Duration(len(msgs))
	return res
}

// TestOfficeDayLinkUps compares, for a scripted day of 200 outbound
// messages, the link-ups of on-demand mode (down after 5 idle minutes)
// with a fixed 15-minute schedule (docs/benchmarks-link.md).
func TestOfficeDayLinkUps(t *testing.T) {
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	msgs := officeDay(day, 200)
	od := simulateDay(Settings{Mode: OnDemand, IdleTime: DefaultIdleTime}, day, msgs)
	// The schedule: every 15 minutes all day, up until idle (no traffic
	// for IdleTime) or at most MaxUp.
	sch := simulateDay(Settings{Mode: Schedule, Every: 15 * time.Minute, MaxUp: DefaultMaxUp, IdleTime: DefaultIdleTime}, day, msgs)
	for _, r := range []struct {
		name string
		r    dayResult
	}{{"on-demand, idle 5m", od}, {"schedule every 15m", sch}} {
		t.Logf("%-20s link-ups %3d  up %8s  outbound wait mean %8s max %8s", r.name, r.r.linkUps, r.r.upTime, r.r.meanWait.Round(time.Second), r.r.maxWait)
	}
	if od.maxWait > 2*time.Second {
		t.Errorf("on-demand mail waited %s for the link", od.maxWait)
	}
	if sch.linkUps != 96 {
		t.Errorf("schedule: %d link-ups in a day, want 96", sch.linkUps)
	}
	if od.linkUps == 0 || od.linkUps > len(msgs) {
		t.Errorf("on-demand: %d link-ups", od.linkUps)
	}
}
