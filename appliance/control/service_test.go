package control

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func call(t *testing.T, c Caller, op string, args Args, result any) *Error {
	t.Helper()
	err := c.Call(context.Background(), op, args, result)
	if err == nil {
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: error %T %v is not an *Error", op, err, err)
	}
	return e
}

func mustCall(t *testing.T, c Caller, op string, args Args, result any) {
	t.Helper()
	if e := call(t, c, op, args, result); e != nil {
		t.Fatalf("%s %v: %v (%+v)", op, args, e, e.Fields)
	}
}

// Errors name the argument (the form field) they are about.
func TestErrorsNameTheirField(t *testing.T) {
	s := New(Options{DataDir: t.TempDir()})
	mustCall(t, s, OpDomainAdd, Args{"domain": "example.test"}, nil)
	for _, c := range []struct {
		op    string
		args  Args
		code  string
		field string
	}{
		{OpDomainAdd, Args{"domain": "nodot"}, CodeInvalid, "domain"},
		{OpDomainAdd, Args{"domain": "b.test", "alias_of": "nowhere.test"}, CodeInvalid, "alias_of"},
		{OpUserAdd, Args{"name": "bob", "password": "short"}, CodeInvalid, "password"},
		{OpUserAdd, Args{"name": "no/slash", "password": "a fine password"}, CodeInvalid, "name"},
		{OpAliasAdd, Args{"address": "x@elsewhere.test", "targets": "bob"}, CodeInvalid, "address"},
		{OpRelayAdd, Args{"cidr": "0.0.0.0/0"}, CodeInvalid, "cidr"},
		{OpConfigSet, Args{"key": "smtp.max_recipients", "value": "many"}, CodeInvalid, "value"},
		{OpSmarthostSet, Args{"host": "smtp.isp.test", "port": "99999"}, CodeInvalid, "port"},
		{OpQueueDel, Args{"id": "../../concierge"}, CodeInvalid, "id"},
		{OpQueueDel, Args{"id": "1772442900.M1P2Q3.mail.example.test"}, CodeNotFound, ""},
		{OpStatus, nil, CodeUnavailable, ""},
		{OpNBTNames, nil, CodeUnavailable, ""},
		{OpNBTSessions, nil, CodeUnavailable, ""},
		{OpNBTSend, Args{"name": "PC1#03", "message": "hi"}, CodeUnavailable, ""},
		{OpEventsWait, Args{"kind": EventSettingsApplied}, CodeUnavailable, ""},
		{"no.such.op", nil, CodeInvalid, ""},
		{OpUserList, Args{"bogus": "1"}, CodeInvalid, ""},
	} {
		e := call(t, s, c.op, c.args, nil)
		if e == nil || e.Code != c.code || (c.field != "" && e.Fields[c.field] == "") {
			t.Errorf("%s %v: %+v; want code %s with field %q", c.op, c.args, e, c.code, c.field)
		}
	}
	if e := call(t, s, OpStatus, nil, nil); e.Message != "the server is not running" {
		t.Errorf("status offline: %q", e.Message)
	}
}

// The first-run setup makes the whole box in one edit, once; then the
// admin password opens admin.check.
func TestSetup(t *testing.T) {
	s := New(Options{DataDir: t.TempDir()})
	var st SetupState
	mustCall(t, s, OpSetupState, nil, &st)
	if st.Done {
		t.Fatal("a fresh box is set up")
	}
	// (Another Service: a failure makes the limiter hold back the next
	// attempt for a second.)
	if e := call(t, New(Options{DataDir: t.TempDir()}), OpAdminCheck, Args{"password": ""}, nil); e == nil || e.Code != CodeUnauthorized {
		t.Errorf("admin.check before setup: %v", e)
	}
	bad := Args{"admin_password": "123", "hostname": "mail.example.test", "domain": "nodot", "user": "alice", "password": "a fine password"}
	e := call(t, s, OpSetupInit, bad, nil)
	if e == nil || e.Fields["admin_password"] == "" {
		t.Fatalf("a weak admin password: %+v", e)
	}
	bad["admin_password"] = "office key 4242"
	if e := call(t, s, OpSetupInit, bad, nil); e == nil || e.Fields["domain"] == "" {
		t.Fatalf("a bad domain: %+v", e)
	}
	mustCall(t, s, OpSetupState, nil, &st)
	if st.Done {
		t.Fatal("a refused setup was half applied")
	}
	good := Args{"admin_password": "office key 4242", "hostname": "mail.example.test", "domain": "example.test",
		"user": "alice", "password": "a fine password", "nbt_name": "OFFICEBOX", "workgroup": "OFFICE"}
	mustCall(t, s, OpSetupInit, good, nil)
	mustCall(t, s, OpSetupState, nil, &st)
	if !st.Done || st.Hostname != "mail.example.test" {
		t.Errorf("after setup: %+v", st)
	}
	var users []UserEntry
	mustCall(t, s, OpUserList, nil, &users)
	if len(users) != 1 || users[0].Name != "alice" || users[0].Addresses[0] != "alice@example.test" {
		t.Errorf("users: %+v", users)
	}
	var k ConfigKey
	mustCall(t, s, OpConfigGet, Args{"key": "nbt.workgroup"}, &k)
	if k.Value != "OFFICE" {
		t.Errorf("workgroup %q", k.Value)
	}
	if e := call(t, s, OpSetupInit, good, nil); e == nil {
		t.Error("setup ran twice")
	}
	mustCall(t, s, OpAdminCheck, Args{"password": "office key 4242", "ip": "10.0.0.1"}, nil)
	if e := call(t, s, OpAdminCheck, Args{"password": "wrong password", "ip": "10.0.0.1"}, nil); e == nil || e.Code != CodeUnauthorized {
		t.Errorf("a wrong admin password: %v", e)
	}
	// The hash is a secret: settings.get and config keys hide it.
	var keys []ConfigKey
	mustCall(t, s, OpConfigKeys, nil, &keys)
	for _, k := range keys {
		if strings.HasPrefix(k.Key, "admin.") {
			t.Errorf("config set takes %s", k.Key)
		}
	}
	if e := call(t, s, OpConfigSet, Args{"key": "admin.password_hash", "value": "x"}, nil); e == nil {
		t.Error("config set admin.password_hash accepted")
	}
}

// A backup restored on a fresh box gives the same settings, hashes and SRS
// key included; a bad backup changes nothing.
func TestBackupRestore(t *testing.T) {
	a := New(Options{DataDir: t.TempDir()})
	mustCall(t, a, OpSetupInit, Args{"admin_password": "office key 4242", "hostname": "mail.example.test", "domain": "example.test",
		"user": "alice", "password": "a fine password"}, nil)
	mustCall(t, a, OpAliasAdd, Args{"address": "@example.test", "targets": "alice"}, nil)
	var b Backup
	mustCall(t, a, OpBackup, nil, &b)
	if !bytes.Contains(b.Settings, []byte("$argon2id$")) || len(b.SRSKey) != 0 && len(b.SRSKey) != 32 {
		t.Fatalf("backup lacks the hashes: %s", b.Settings)
	}
	os.WriteFile(filepath.Join(a.opt.DataDir, SRSKeyFile), bytes.Repeat([]byte{7}, 32), 0o600)
	mustCall(t, a, OpBackup, nil, &b)
	doc, _ := jsonText(b)

	fresh := New(Options{DataDir: t.TempDir()})
	for _, bad := range []string{"{}", `{"format":"concierge-backup","version":1,"settings":{"version":1,"hostname":"nodot"}}`,
		strings.Replace(doc, `"version": 1`, `"version": 9`, 1), "not json"} {
		if e := call(t, fresh, OpRestore, Args{"backup": bad}, nil); e == nil || e.Code != CodeInvalid || e.Fields["backup"] == "" {
			t.Errorf("restore of %.40q: %+v", bad, e)
		}
	}
	if _, err := os.Stat(filepath.Join(fresh.opt.DataDir, "concierge.json")); err == nil {
		t.Error("a refused restore wrote the settings")
	}
	mustCall(t, fresh, OpRestore, Args{"backup": doc}, nil)
	var b2 Backup
	mustCall(t, fresh, OpBackup, nil, &b2)
	if !bytes.Equal(b.Settings, b2.Settings) || !bytes.Equal(b.SRSKey, b2.SRSKey) {
		t.Errorf("restored settings differ:\n%s\n%s", b.Settings, b2.Settings)
	}
	mustCall(t, fresh, OpAdminCheck, Args{"password": "office key 4242"}, nil)
}

func TestEventsWait(t *testing.T) {
	e := newEvents()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan Event)
	go func() {
		ev, _ := e.wait(ctx, EventSettingsApplied, 1)
		got <- ev
	}()
	e.publish(EventNamesClaimed)
	e.publish(EventSettingsApplied) // generation 1: not after 1
	e.publish(EventSettingsApplied)
	if ev := <-got; ev.Generation != 2 || ev.Kind != EventSettingsApplied {
		t.Errorf("woke with %+v", ev)
	}
	short, cancel2 := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel2()
	if _, err := e.wait(short, EventSettingsApplied, 2); err == nil {
		t.Error("wait for a generation not published returned")
	}
}
