// Package configtest makes configurations from a file's text for tests.
package configtest

import (
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/testenv/rig"
)

// Parse parses a configuration file's text (paths relative to a new
// temporary directory, env as the environment) or fails the test.
func Parse(t interface {
	rig.TB
	TempDir() string
}, yaml string, env ...string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), t.TempDir(), env)
	if err != nil {
		t.Fatalf("parse the configuration: %v", err)
	}
	return cfg
}
