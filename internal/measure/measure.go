// Package measure holds what the benchmarks share: a process's memory
// figures from /proc and the summary of repeated rounds.
package measure

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// StatusKB returns a kB field of /proc/PID/status ("VmRSS", "VmHWM"), or 0
// when the process or the field is gone.
func StatusKB(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// Median returns the middle of v (the upper one of an even count).
func Median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// Rounds lists every round's figure, as "[a b c]".
func Rounds(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
