package config

// Auth configures the auth service (owned by the auth service's issue).
type Auth struct{}

func (a *Auth) defaults(c *Config) {}

func (a *Auth) validate() error { return nil }
