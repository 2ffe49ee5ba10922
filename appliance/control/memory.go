package control

// Memory is the server process's memory, for the status op (and so for
// reading it from a box through the setup page or the control API).
type Memory struct {
	// RSS and PeakRSS are VmRSS and VmHWM of /proc/self/status, in bytes.
	RSS     int64 `json:"rss"`
	PeakRSS int64 `json:"peak_rss"`
	// GoHeap is the Go heap in use (live and not yet collected objects);
	// GoSys is all memory the Go runtime got from the system.
	GoHeap int64 `json:"go_heap"`
	GoSys  int64 `json:"go_sys"`
}
