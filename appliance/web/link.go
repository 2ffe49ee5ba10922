package web

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"concierge/appliance/config"
	"concierge/appliance/control"
	"concierge/appliance/link"
)

// The ISP link page: the dial-out link's state, "Connect now", its
// settings and accounting (appliance/link through the link ops).

type configKey struct{ field, key string }

// linkKeys are the link page's settings form: form field → settings key.
var linkKeys = []configKey{
	{"mail_host", "link.mail_host"},
	{"mode", "link.mode"},
	{"idle_time", "link.idle_time"},
	{"every", "link.every"},
	{"max_up", "link.max_up"},
	{"redial_wait", "link.redial_wait"},
	{"max_redial_wait", "link.max_redial_wait"},
	{"up_command", "link.up_command"},
	{"down_command", "link.down_command"},
	{"release_method", "link.release_method"},
	{"release_domains", "link.release_domains"},
	{"relay_domains", "link.relay_domains"},
	{"etrn_networks", "link.etrn_networks"},
	{"etrn_users", "link.etrn_users"},
}

type linkData struct {
	Status  link.Status
	Running bool
	Form    map[string]string
	Modes   []string
	Methods []string
	// Text and Lists are the text inputs of the settings form.
	Text, Lists []linkField
}

type linkField struct{ Name, Label string }

var linkText = []linkField{
	{"mail_host", "The ISP's mail host (host:port): the link is up when it answers; ETRN goes there"},
	{"idle_time", "Hang up after this long without mail going out or coming in (e.g. 5m)"},
	{"every", "Schedule: bring the link up every (e.g. 1h)"},
	{"max_up", "Schedule: keep it up for at most (e.g. 15m)"},
	{"redial_wait", "On demand: when dialing fails while mail waits, dial again after (e.g. 1m); the pause doubles after each failed round"},
	{"max_redial_wait", "On demand: the pause between failed rounds grows to at most (e.g. 15m)"},
	{"up_command", "Command that brings the link up (e.g. pon isp); empty: only watch it"},
	{"down_command", "Command that takes the link down (e.g. poff isp)"},
}

var linkLists = []linkField{
	{"release_domains", "Domains the ISP holds mail for (empty: all of the box's domains)"},
	{"relay_domains", "Domains this box holds mail for, as backup MX, until their server sends ETRN"},
	{"etrn_networks", "Networks that may send ETRN for them (e.g. 10.1.2.3/32)"},
	{"etrn_users", "Users who may send ETRN for them after logging in"},
}

func linkValues(ctx context.Context, c control.Caller) (map[string]string, error) {
	var cfg config.Config
	if err := c.Call(ctx, control.OpSettingsGet, nil, &cfg); err != nil {
		return nil, err
	}
	l := cfg.Link
	return map[string]string{
		"mail_host": l.MailHost, "mode": l.Mode, "idle_time": l.IdleTime.String(), "every": l.Every.String(),
		"max_up": l.MaxUp.String(), "redial_wait": l.RedialWait.String(), "max_redial_wait": l.MaxRedialWait.String(),
		"up_command": l.UpCommand, "down_command": l.DownCommand,
		"release_method": l.ReleaseMethod, "release_domains": strings.Join(l.ReleaseDomains, ", "),
		"relay_domains": strings.Join(l.RelayDomains, ", "), "etrn_networks": strings.Join(l.ETRNNetworks, ", "),
		"etrn_users": strings.Join(l.ETRNUsers, ", "),
	}, nil
}

func loadLink(ctx context.Context, c control.Caller, _ *http.Request) (any, error) {
	d := &linkData{Modes: []string{string(link.Always), string(link.OnDemand), string(link.Schedule)},
		Methods: []string{link.MethodETRN, link.MethodFinger, link.MethodNone}, Text: linkText, Lists: linkLists}
	var err error
	if d.Form, err = linkValues(ctx, c); err != nil {
		return nil, err
	}
	err = c.Call(ctx, control.OpLinkStatus, nil, &d.Status)
	var ce *control.Error
	if errors.As(err, &ce) && ce.Code == control.CodeUnavailable {
		return d, nil // no server: the settings only
	}
	d.Running = err == nil
	return d, err
}

// setConfigKeys sets the keys whose value changed, one op each. A key
// refused may be accepted once another is set (a pause raised above its
// old ceiling, with the ceiling), so the refused ones go round again
// while a round sets any. When one is still refused, those set are put
// back, last first, so the form changes all or nothing.
func setConfigKeys(ctx context.Context, c control.Caller, keys []configKey, cur, f map[string]string) (string, error) {
	var todo, done []configKey
	for _, k := range keys {
		if f[k.field] != cur[k.field] {
			todo = append(todo, k)
		}
	}
	if len(todo) == 0 {
		return "Nothing changed.", nil
	}
	for len(todo) > 0 {
		var left []configKey
		var refused error
		for _, k := range todo {
			err := c.Call(ctx, control.OpConfigSet, control.Args{"key": k.key, "value": f[k.field]}, nil)
			if err == nil {
				done = append(done, k)
				continue
			}
			if refused == nil {
				var ce *control.Error
				if errors.As(err, &ce) {
					err = &control.Error{Code: ce.Code, Fields: map[string]string{k.field: ce.Error()}}
				}
				refused = err
			}
			left = append(left, k)
		}
		if len(left) == len(todo) {
			for i := len(done) - 1; i >= 0; i-- {
				c.Call(ctx, control.OpConfigSet, control.Args{"key": done[i].key, "value": cur[done[i].field]}, nil)
			}
			return "", refused
		}
		todo = left
	}
	return "Saved.", nil
}

func init() {
	var fields []string
	for _, k := range linkKeys {
		fields = append(fields, k.field)
	}
	actions = append(actions,
		&action{path: "/link/up", form: "link-up", view: "link",
			run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
				return "The link is being brought up: mail goes out, then the ISP is asked for the held mail.", c.Call(ctx, control.OpLinkUp, nil, nil)
			}},
		&action{path: "/link/down", form: "link-down", view: "link",
			run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
				return "The link is being taken down.", c.Call(ctx, control.OpLinkDown, nil, nil)
			}},
		&action{path: "/link/settings", form: "link-settings", view: "link", fields: fields,
			run: func(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
				cur, err := linkValues(ctx, c)
				if err != nil {
					return "", err
				}
				for _, k := range []string{"release_domains", "relay_domains", "etrn_networks", "etrn_users"} {
					f[k] = listArg(f[k])
					cur[k] = listArg(cur[k])
				}
				return setConfigKeys(ctx, c, linkKeys, cur, f)
			}},
	)
}
