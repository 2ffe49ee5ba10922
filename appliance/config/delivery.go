package config

// Delivery holds the settings of outbound delivery (the queue runner).
type Delivery struct {
}

// DefaultDelivery returns the outbound delivery defaults.
func DefaultDelivery() Delivery { return Delivery{} }

func (d *Delivery) validate(p string) Errors { return nil }
