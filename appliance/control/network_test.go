package control

import (
	"testing"
)

// Without a server the network settings are saved for the next start;
// the confirmation needs the server; errors name the form's fields.
func TestNetworkOpsOffline(t *testing.T) {
	s := New(Options{DataDir: t.TempDir()})
	var ch NetworkChange
	mustCall(t, s, OpNetworkSet, Args{"interface": "eth0", "address": "10.77.0.5/24", "gateway": "10.77.0.1", "dns": "10.77.0.1,10.77.0.2"}, &ch)
	if ch.Live || ch.Apply || ch.Trial != nil {
		t.Errorf("offline network.set gave %+v", ch)
	}
	var show NetworkShow
	mustCall(t, s, OpNetworkShow, nil, &show)
	if show.Live || show.Apply || len(show.Interfaces) != 1 || show.Interfaces[0].Address != "10.77.0.5/24" || len(show.Interfaces[0].DNS) != 2 || show.RollbackAfter != "1m0s" {
		t.Errorf("network.show: %+v", show)
	}
	for _, c := range []struct {
		args  Args
		field string
	}{
		{Args{"interface": "eth0", "address": "10.77.0.5"}, "address"},
		{Args{"interface": "", "address": "10.77.0.5/24"}, "interface"},
		{Args{"interface": "eth0", "address": "10.77.0.5/24", "gateway": "10.1.1.1"}, "gateway"},
		{Args{"interface": "eth0", "address": "10.77.0.5/24", "dns": "resolver"}, "dns"},
		{Args{"interface": "eth0", "address": "10.77.0.5/24", "via": "somewhere"}, "via"},
	} {
		e := call(t, s, OpNetworkSet, c.args, nil)
		if e == nil || e.Code != CodeInvalid || e.Fields[c.field] == "" {
			t.Errorf("network.set %v: %+v, want an error about %s", c.args, e, c.field)
		}
	}
	if e := call(t, s, OpNetworkConfirm, nil, nil); e == nil || e.Code != CodeUnavailable {
		t.Errorf("network.confirm without a server: %+v", e)
	}
}
