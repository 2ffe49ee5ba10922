package web

import (
	"context"
	"strings"

	"concierge/appliance/config"
	"concierge/appliance/control"
)

// The NetBIOS page's reverse gateway form: one field, the list setting
// nbt.reverse_gateways ("8139=FILES#20, 8140=PRINTS#20").
var reverseKeys = []configKey{{"reverse_gateways", "nbt.reverse_gateways"}}

// reverseValues reads the current setting for the form.
func reverseValues(ctx context.Context, c control.Caller) (map[string]string, error) {
	var cfg config.Config
	if err := c.Call(ctx, control.OpSettingsGet, nil, &cfg); err != nil {
		return nil, err
	}
	return map[string]string{"reverse_gateways": strings.Join(cfg.NBT.ReverseGateways, ", ")}, nil
}

func setReverse(ctx context.Context, c control.Caller, f map[string]string) (string, error) {
	cur, err := reverseValues(ctx, c)
	if err != nil {
		return "", err
	}
	return setConfigKeys(ctx, c, reverseKeys, cur, f)
}
