package config

import "reflect"

// Secrets are fields tagged `secret:"true"` (a string or a list of
// strings): password hashes, the smarthost password, and any secret a
// later setting adds. "config show" and "config get" print Hidden in their
// place; the config itself (Marshal, what Store writes and a backup takes)
// keeps them.
const Hidden = "(set, hidden)"

// Redacted returns a copy of the configuration for display, with every
// secret that is set replaced by Hidden. It is not a valid configuration
// and must never be saved.
func (c *Config) Redacted() *Config {
	r := c.Clone()
	redact(reflect.ValueOf(r).Elem())
	return r
}

func redact(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			if t.Field(i).Tag.Get("secret") == "true" {
				hide(v.Field(i))
				continue
			}
			redact(v.Field(i))
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			redact(v.Index(i))
		}
	case reflect.Pointer:
		if !v.IsNil() {
			redact(v.Elem())
		}
	}
}

func hide(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		if v.String() != "" {
			v.SetString(Hidden)
		}
	case reflect.Slice:
		for i := range v.Len() {
			hide(v.Index(i))
		}
	default:
		panic("config: a secret must be a string or a list of strings, not " + v.Type().String())
	}
}
