package main

import (
	"testing"

	"github.com/mailferry/mailferry/cmd/mailferry/cutover"
	"github.com/mailferry/mailferry/shared/config"
)

// The example configuration in deploy/ is what operators copy: its
// cutover section must load as it is.
func TestTheDeployedExampleConfigurationHasAValidCutoverSection(t *testing.T) {
	cfg, err := config.Load("../../deploy/mailferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := cutover.LoadSettings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.ReportDir != "/var/lib/mailferry/reports" || s.DomainsInFlight != 50 || s.RestoreTTL != 3600 {
		t.Errorf("cutover settings = %+v", s)
	}
}
