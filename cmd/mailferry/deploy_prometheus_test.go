package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/metrics"
)

// The Prometheus files in deploy/prometheus are what operators install:
// promtool accepts the scrape configuration and the alert rules, and the
// rules' unit tests pass.
func TestTheDeployedPrometheusFilesPassPromtool(t *testing.T) {
	tool := promtool(t)
	dir := "../../deploy/prometheus"
	tests := []struct {
		name string
		args []string
	}{
		{"scrape configuration", []string{"check", "config", "prometheus.yml"}},
		{"alert rules", []string{"check", "rules", "alerts.yml"}},
		{"alert rules' unit tests", []string{"test", "rules", "alerts_test.yml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(tool, tt.args...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("promtool %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
		})
	}
}

// Every daemon's example file serves its metrics where the example scrape
// configuration looks for them.
func TestTheDeployedDaemonsServeMetricsWherePrometheusScrapes(t *testing.T) {
	scrape, err := os.ReadFile("../../deploy/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	listens := map[string]string{}
	for _, svc := range []string{"extractor", "loader", "dnsctl", "auth"} {
		cfg, err := config.Load(filepath.Join("../../deploy", svc+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := metrics.LoadSettings(cfg)
		if err != nil {
			t.Fatalf("%s.yaml: %v", svc, err)
		}
		listens[svc] = s.Listen
	}
	for _, svc := range []string{"delta", "cutover"} {
		unit, err := os.ReadFile(filepath.Join("../../deploy/systemd", "mailferry-"+svc+".service"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(unit), "\n") {
			if v, ok := strings.CutPrefix(line, "Environment=MAILFERRY_METRICS_LISTEN="); ok {
				listens[svc] = v
			}
		}
	}
	seen := map[string]string{}
	for svc, addr := range listens {
		if addr == "" {
			t.Errorf("%s: no metrics listen address", svc)
			continue
		}
		if other, dup := seen[addr]; dup {
			t.Errorf("%s and %s both listen on %s", svc, other, addr)
		}
		seen[addr] = svc
		job := fmt.Sprintf("- job_name: mailferry-%s\n    static_configs:\n      - targets: [%q]", svc, addr)
		if !strings.Contains(string(scrape), job) {
			t.Errorf("prometheus.yml does not scrape %s at %s", svc, addr)
		}
	}
}
