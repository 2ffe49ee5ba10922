package web

import (
	"context"
	"net/http"

	"concierge/appliance/control"
	"concierge/appliance/diag"
)

// The diagnostics page: the report of the last check.dns, and a form
// that runs the checks again.

type diagData struct {
	*control.DNSReport
	Rows []diagRow
}

type diagRow struct {
	diag.Check
	Title string
}

// diagTitles name the kinds of check in the table.
var diagTitles = map[string]string{
	diag.KindPublic: "Public address",
	diag.KindPort25: "Port 25",
	diag.KindMX:     "MX records",
	diag.KindMXHost: "Mail host",
	diag.KindPTR:    "Reverse DNS",
	diag.KindBanner: "Banner name",
	diag.KindRelay:  "Relaying",
}

func loadDiagnostics(ctx context.Context, c control.Caller, _ *http.Request) (any, error) {
	var rep *control.DNSReport
	if err := c.Call(ctx, control.OpCheckLast, nil, &rep); err != nil || rep == nil {
		return (*diagData)(nil), err
	}
	d := &diagData{DNSReport: rep}
	for _, ch := range rep.Checks {
		t := diagTitles[ch.Kind]
		if t == "" {
			t = ch.Kind
		}
		d.Rows = append(d.Rows, diagRow{Check: ch, Title: t})
	}
	return d, nil
}

func runDiagnostics(ctx context.Context, c control.Caller, _ map[string]string) (string, error) {
	var rep control.DNSReport
	if err := c.Call(ctx, control.OpCheckDNS, nil, &rep); err != nil {
		return "", err
	}
	return "Checks done: " + rep.Summary() + ".", nil
}
