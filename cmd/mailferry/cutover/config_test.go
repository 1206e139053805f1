package cutover_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/cutover"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/testenv/configtest"
)

func load(t *testing.T, section string) (cutover.Settings, error) {
	t.Helper()
	return cutover.LoadSettings(configtest.Parse(t, "nats: {data_dir: nats}\n"+section))
}

func TestCutoverSettingsDefaultToTheIssuesValues(t *testing.T) {
	s, err := load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Order != campaign.OrderPrestage || s.DomainsInFlight != 50 || time.Duration(s.DeltaGrace) != time.Hour ||
		s.RestoreTTL != 3600 || !strings.HasSuffix(s.ReportDir, "/reports") || !filepath.IsAbs(s.ReportDir) {
		t.Errorf("defaults = %+v", s)
	}
}

func TestCutoverSettingsRefuseWhatCannotWork(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"cutover: {order: sideways}", `order "sideways"`},
		{"cutover: {domains_in_flight: -1}", "domains_in_flight -1"},
		{"cutover: {lease_ttl: 1s}", "lease_ttl 1s"},
		{"cutover: {delta_grace: -5m}", "delta_grace"},
		{"cutover: {restore_ttl: 4294967295}", "restore_ttl"},
		{"cutover: {delta_gracee: 1h}", "delta_gracee"},
	} {
		_, err := load(t, tc.yaml)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.yaml, err, tc.want)
		}
	}
}

func TestCutoverSettingsTakeTheDNSRestoreTTLWhenTheirOwnIsUnset(t *testing.T) {
	s, err := load(t, "dns: {restore_ttl: 900}\n")
	if err != nil {
		t.Fatal(err)
	}
	if s.RestoreTTL != 900 {
		t.Errorf("restore_ttl = %d, want dns.restore_ttl 900", s.RestoreTTL)
	}
}
