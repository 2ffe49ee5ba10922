package appliance

import (
	"bufio"
	"bytes"
	"os"
	"runtime/metrics"
	"strconv"

	"concierge/appliance/control"
)

// memory reads the process's resident set (now and at its peak) from
// /proc/self/status and the Go heap from runtime/metrics (which, unlike
// runtime.ReadMemStats, does not stop the world).
func memory() *control.Memory {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	m := &control.Memory{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) != 3 || string(f[2]) != "kB" {
			continue
		}
		n, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			continue
		}
		switch string(f[0]) {
		case "VmRSS:":
			m.RSS = n << 10
		case "VmHWM:":
			m.PeakRSS = n << 10
		}
	}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		m.GoHeap = int64(s[0].Value.Uint64())
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		m.GoSys = int64(s[1].Value.Uint64())
	}
	return m
}
