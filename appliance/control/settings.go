package control

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"concierge/appliance/config"
)

func init() {
	register(map[string]opDef{
		OpSettingsGet: {run: (*Service).settingsGet},
		OpConfigKeys:  {run: (*Service).configKeys},
		OpConfigGet:   {args: []string{"key"}, run: (*Service).configGet, fields: map[string]string{"*": "key"}},
		OpConfigSet: {args: []string{"key", "value"}, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.update(ctx, func(c *config.Config) error { return c.Set(a["key"], a["value"]) })
		}, fields: map[string]string{"*": "value"}},
		OpConfigCheck:  {run: (*Service).configCheck},
		OpConfigReload: {live: true, run: (*Service).configReload},
		OpDomainList:   {run: (*Service).domainList},
		OpDomainAdd: {args: []string{"domain", "alias_of"}, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.update(ctx, func(c *config.Config) error { return c.AddDomain(a["domain"], a["alias_of"]) })
		}, fields: map[string]string{"alias-of": "alias_of"}},
		OpDomainDel: {args: []string{"domain"}, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.update(ctx, func(c *config.Config) error { return c.DelDomain(a["domain"]) })
		}},
		OpUserList: {run: (*Service).userList},
		OpUserAdd: {args: []string{"name", "password"}, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.update(ctx, func(c *config.Config) error { return c.AddUser(a["name"], a["password"]) })
		}, fields: map[string]string{"user": "name"}},
		OpUserPasswd: {args: []string{"name", "password"}, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.update(ctx, func(c *config.Config) error { return c.SetPassword(a["name"], a["password"]) })
		}, fields: map[string]string{"user": "name"}},
		OpUserDel: {args: []string{"name"}, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.update(ctx, func(c *config.Config) error { return c.DelUser(a["name"]) })
		}, fields: map[string]string{"user": "name"}},
		OpAliasList: {run: (*Service).aliasList},
		OpAliasAdd: {args: []string{"address", "targets"}, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.update(ctx, func(c *config.Config) error { return c.AddAlias(a["address"], list(a["targets"])) })
		}, fields: map[string]string{"target": "targets"}},
		OpAliasDel: {args: []string{"address", "targets"}, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.update(ctx, func(c *config.Config) error { return c.DelAlias(a["address"], list(a["targets"])) })
		}, fields: map[string]string{"target": "targets"}},
		OpRelayList: {run: (*Service).relayList},
		OpRelayAdd: {args: []string{"cidr"}, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.update(ctx, func(c *config.Config) error { return c.AddRelayNetwork(a["cidr"]) })
		}, fields: map[string]string{"relay": "cidr"}},
		OpRelayDel: {args: []string{"cidr"}, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.update(ctx, func(c *config.Config) error { return c.DelRelayNetwork(a["cidr"]) })
		}, fields: map[string]string{"relay": "cidr"}},
		OpSmarthostSet: {args: []string{"host", "port", "user", "password", "tls"}, run: (*Service).smarthostSet,
			fields: map[string]string{"delivery.smarthost": "host", "delivery.smarthost_user": "user",
				"delivery.smarthost_password": "password", "delivery.smarthost_tls": "tls"}},
		OpAdminPasswd: {args: []string{"password"}, run: (*Service).adminPasswd},
		OpAdminCheck:  {args: []string{"password", "ip"}, run: (*Service).adminCheck},
		OpSetupState:  {run: (*Service).setupState},
		OpSetupInit: {args: []string{"admin_password", "hostname", "domain", "user", "password", "nbt_name", "workgroup"},
			run: (*Service).setupInit, fields: map[string]string{"user": "user", "nbt.name": "nbt_name", "nbt.workgroup": "workgroup"}},
		OpBackup:     {run: (*Service).backup},
		OpRestore:    {args: []string{"backup"}, run: (*Service).restore, fields: map[string]string{"*": "backup"}},
		OpQueueList:  {run: (*Service).queueList},
		OpQueueShow:  {args: []string{"id"}, run: (*Service).queueShow},
		OpQueueRetry: {args: []string{"id"}, run: (*Service).queueRetry},
		OpQueueFlush: {args: []string{"domain"}, run: (*Service).queueFlush},
		OpQueueDel:   {args: []string{"id"}, run: (*Service).queueDel},
		OpNBTNames: {live: true, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.opt.Live.NBTNames(), nil
		}},
		OpStatus: {live: true, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			return s.opt.Live.Status(), nil
		}},
		OpLogRecent: {args: []string{"n"}, live: true, run: (*Service).logRecent},
		OpRestart: {live: true, run: func(s *Service, ctx context.Context, a Args) (any, error) {
			s.edit.Lock()
			defer s.edit.Unlock()
			return nil, s.opt.Live.Restart(ctx)
		}},
		OpEventsWait: {args: []string{"kind", "after", "timeout"}, live: true, run: (*Service).eventsWait},
	})
}

// update edits the settings file. In the server it then reconfigures every
// service; when that fails the previous file is put back and applied
// again, and the error returned: nothing stays half applied.
func (s *Service) update(ctx context.Context, fn func(*config.Config) error) (Applied, error) {
	s.edit.Lock()
	defer s.edit.Unlock()
	prev, err := os.ReadFile(s.store.Path())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Applied{}, err
	}
	if _, err := s.store.Update(fn); err != nil {
		return Applied{}, err
	}
	return s.apply(ctx, prev)
}

// apply reconfigures the running server with the file just written; on
// an error it writes prev back (nil: no file) and applies that.
func (s *Service) apply(ctx context.Context, prev []byte) (Applied, error) {
	if s.opt.Live == nil {
		return Applied{}, nil
	}
	gen, err := s.opt.Live.Reload(ctx)
	if err == nil {
		return Applied{Live: true, Generation: gen}, nil
	}
	s.putBack(prev)
	if _, rerr := s.opt.Live.Reload(ctx); rerr != nil {
		s.opt.Log.Error("control: the previous settings did not apply again either", "err", rerr)
	}
	return Applied{}, Errorf(CodeInvalid, "the services refused the settings (the previous ones are back): %v", err)
}

func (s *Service) load() (*config.Config, error) { return s.store.Load() }

func (s *Service) settingsGet(ctx context.Context, a Args) (any, error) {
	c, err := s.load()
	if err != nil {
		return nil, err
	}
	return c.Redacted(), nil
}

func (s *Service) configKeys(ctx context.Context, a Args) (any, error) {
	c, err := s.load()
	if err != nil {
		return nil, err
	}
	out := []ConfigKey{}
	for _, k := range c.Keys() {
		v, _ := c.Get(k)
		out = append(out, ConfigKey{Key: k, Value: v})
	}
	return out, nil
}

func (s *Service) configGet(ctx context.Context, a Args) (any, error) {
	c, err := s.load()
	if err != nil {
		return nil, err
	}
	v, err := c.Get(a["key"])
	if err != nil {
		return nil, err
	}
	return ConfigKey{Key: a["key"], Value: v}, nil
}

func (s *Service) configCheck(ctx context.Context, a Args) (any, error) {
	if _, err := s.load(); err != nil {
		return nil, err
	}
	return ConfigCheck{Path: s.store.Path()}, nil
}

func (s *Service) configReload(ctx context.Context, a Args) (any, error) {
	s.edit.Lock()
	defer s.edit.Unlock()
	gen, err := s.opt.Live.Reload(ctx)
	if err != nil {
		return nil, err
	}
	return Applied{Live: true, Generation: gen}, nil
}

func (s *Service) domainList(ctx context.Context, a Args) (any, error) {
	c, err := s.load()
	if err != nil {
		return nil, err
	}
	out := []DomainEntry{}
	for i, d := range c.Domains {
		out = append(out, DomainEntry{Name: d.Name, AliasOf: d.AliasOf, Primary: i == 0})
	}
	return out, nil
}

func (s *Service) userList(ctx context.Context, a Args) (any, error) {
	c, err := s.load()
	if err != nil {
		return nil, err
	}
	out := []UserEntry{}
	for _, u := range c.SortedUsers() {
		out = append(out, UserEntry{Name: u, Addresses: c.AddressesOf(u)})
	}
	return out, nil
}

func (s *Service) aliasList(ctx context.Context, a Args) (any, error) {
	c, err := s.load()
	if err != nil {
		return nil, err
	}
	out := []AliasEntry{}
	for _, al := range c.Aliases {
		out = append(out, AliasEntry{Address: al.Address, Targets: al.Targets, CatchAll: strings.HasPrefix(al.Address, "@")})
	}
	return out, nil
}

func (s *Service) relayList(ctx context.Context, a Args) (any, error) {
	c, err := s.load()
	if err != nil {
		return nil, err
	}
	return append([]string{}, c.RelayNetworks...), nil
}

// smarthostSet sets the smarthost in one edit: host and port (empty host:
// deliver by MX), its login and TLS mode. An empty password keeps the one
// set, so a form need not show it.
func (s *Service) smarthostSet(ctx context.Context, a Args) (any, error) {
	host := strings.TrimSpace(a["host"])
	if port := strings.TrimSpace(a["port"]); host != "" && port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, invalid("port", "port: %q is not a port number (1 to 65535)", port)
		}
		host = strings.TrimSuffix(host, ":"+port) + ":" + port
	}
	return s.update(ctx, func(c *config.Config) error {
		keys := []struct{ key, value string }{
			{"delivery.smarthost", host},
			{"delivery.smarthost_user", a["user"]},
		}
		if a["tls"] != "" {
			keys = append(keys, struct{ key, value string }{"delivery.smarthost_tls", a["tls"]})
		}
		if a["password"] != "" || host == "" {
			keys = append(keys, struct{ key, value string }{"delivery.smarthost_password", a["password"]})
		}
		for _, k := range keys {
			if err := c.Set(k.key, k.value); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Service) adminPasswd(ctx context.Context, a Args) (any, error) {
	if err := config.CheckPassword("admin", a["password"]); err != nil {
		return nil, err
	}
	hash := config.HashPassword(a["password"])
	return s.update(ctx, func(c *config.Config) error {
		c.Admin.PasswordHash = hash
		return nil
	})
}

// adminCheck answers nil for the right admin password, else
// CodeUnauthorized; before the first-run setup every password is wrong.
func (s *Service) adminCheck(ctx context.Context, a Args) (any, error) {
	var ip netip.Addr
	if v := a["ip"]; v != "" {
		var err error
		if ip, err = netip.ParseAddr(v); err != nil {
			return nil, invalid("ip", "ip: %q is not an IP address", v)
		}
	}
	c, err := s.load()
	if err != nil {
		return nil, err
	}
	return nil, s.checkAdmin(ctx, c.Admin.PasswordHash, a["password"], ip)
}

func (s *Service) setupState(ctx context.Context, a Args) (any, error) {
	c, err := s.load()
	if err != nil {
		return nil, err
	}
	return SetupState{Done: c.Admin.PasswordHash != "", Hostname: c.Hostname}, nil
}

// setupInit is the first-run setup in one edit: the admin password, the
// box's name, the primary mail domain, the first user and the NetBIOS
// name and workgroup. It is refused once the admin password is set.
func (s *Service) setupInit(ctx context.Context, a Args) (any, error) {
	fields := map[string]string{}
	if err := config.CheckPassword("admin", a["admin_password"]); err != nil {
		fields["admin_password"] = err.Error()
	}
	for _, f := range []string{"hostname", "domain", "user", "password"} {
		if strings.TrimSpace(a[f]) == "" {
			fields[f] = f + ": needed"
		}
	}
	if len(fields) > 0 {
		return nil, &Error{Code: CodeInvalid, Message: "some fields need a change", Fields: fields}
	}
	hash := config.HashPassword(a["admin_password"])
	return s.update(ctx, func(c *config.Config) error {
		if c.Admin.PasswordHash != "" {
			return Errorf(CodeInvalid, "the first-run setup is already done")
		}
		var errs config.Errors
		set := func(key, value string) {
			if value == "" {
				return
			}
			if err := c.Set(key, value); err != nil {
				errs = append(errs, err)
			}
		}
		set("hostname", a["hostname"])
		set("nbt.name", a["nbt_name"])
		set("nbt.workgroup", a["workgroup"])
		if c.Domain(a["domain"]) == nil {
			if err := c.AddDomain(a["domain"], ""); err != nil {
				errs = append(errs, err)
			}
		}
		if err := c.AddUser(a["user"], a["password"]); err != nil {
			errs = append(errs, err)
		}
		c.Admin.PasswordHash = hash
		return flatten(errs)
	})
}

// flatten joins config errors into one config.Errors (nil for none).
func flatten(errs config.Errors) error {
	var out config.Errors
	for _, e := range errs {
		var list config.Errors
		if errors.As(e, &list) {
			out = append(out, list...)
		} else {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
