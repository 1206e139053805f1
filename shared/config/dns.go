package config

// DNS configures dnsctl (owned by the dnsctl service's issue).
type DNS struct{}

func (d *DNS) defaults(c *Config) {}

func (d *DNS) validate() error { return nil }
