package config

// NBT holds the NetBIOS name service settings.
type NBT struct {
	// Enabled turns the NetBIOS services on.
	Enabled bool `json:"enabled"`
	// Name is the box's NetBIOS name (up to 15 characters).
	Name string `json:"name"`
	// Workgroup is the box's NetBIOS workgroup.
	Workgroup string `json:"workgroup"`
}

// DefaultNBT returns the NetBIOS defaults.
func DefaultNBT() NBT {
	return NBT{Enabled: true, Name: "CONCIERGE", Workgroup: "WORKGROUP"}
}

func (s *NBT) validate(p string) Errors {
	var errs Errors
	if len(s.Name) == 0 || len(s.Name) > 15 {
		errs = append(errs, fieldErr(p+".name", "must be 1 to 15 characters, not %q", s.Name))
	}
	if len(s.Workgroup) == 0 || len(s.Workgroup) > 15 {
		errs = append(errs, fieldErr(p+".workgroup", "must be 1 to 15 characters, not %q", s.Workgroup))
	}
	return errs
}
