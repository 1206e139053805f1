package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/cli"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/zonegen"
)

// world starts BIND with 20 generated zones and writes a configuration
// file for them; it returns the file's path.
func world(t *testing.T) (*bindtest.Cluster, string) {
	t.Helper()
	zones, _ := zonegen.Mix(20, "cli.test.")
	c := bindtest.StartT(t, bindtest.Options{Zones: append(zonegen.Support(), zones...)})
	dir := t.TempDir()
	var names []string
	for _, z := range zones {
		names = append(names, z.Name)
	}
	if err := os.WriteFile(filepath.Join(dir, "domains.txt"), []byte("# customers\n"+strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`nats: {data_dir: nats}
log: {level: error}
dns:
  server: %q
  tsig_key_file: %q
  verify_servers: [%q, %q]
  verify_ns: false
  legacy_mail_hosts: [%s, %q]
  new_mx: ["10 %s", "20 %s"]
  mail_host_a: %s
  spf: {replace: %q, with: %q}
  domains_file: domains.txt
  max_change_percent: 50
  verify_timeout: 30s
`, c.Primary.Addr, c.KeyFile, c.Primary.Addr, c.Secondary.Addr, zonegen.LegacyIP, zonegen.OldNamePattern,
		zonegen.NewMX1, zonegen.NewMX2, zonegen.NewIP, zonegen.SPFOld, zonegen.SPFNew)
	path := filepath.Join(dir, "mailferry.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return c, path
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := cli.Main(ctx, args, &out, &errOut)
	if err != nil && errOut.Len() > 0 {
		t.Logf("stderr of %v:\n%s", args, errOut.String())
	}
	return out.String(), err
}

func TestPlanPrintsEachDomainsDiffAndTotals(t *testing.T) {
	_, cfg := world(t)
	out, err := run(t, "plan", "-c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"c1.cli.test. switch",
		"  - c1.cli.test. 3600 IN MX 10 mail.c1.cli.test.",
		"  + c1.cli.test. 3600 IN MX 10 mx1.newmail.test.",
		"  + c1.cli.test. 3600 IN MX 20 mx2.newmail.test.",
		"  - mail.c1.cli.test. 3600 IN A 192.0.2.10",
		"  + mail.c1.cli.test. 3600 IN A 198.51.100.25",
		`  - c1.cli.test. 3600 IN TXT "v=spf1 a mx ip4:192.0.2.10 ~all"`,
		`  + c1.cli.test. 3600 IN TXT "v=spf1 a mx ip4:198.51.100.25 ~all"`,
		"c12.cli.test. skip (external): mail is hosted elsewhere",
		"c15.cli.test. skip (cname_third_party)",
		"totals: switch 12, ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q", want)
		}
	}
	if strings.Contains(out, "google-site-verification") {
		t.Error("plan shows TXT records it does not change")
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

func TestApplyVerifyStatusRollbackFromTheCommandLine(t *testing.T) {
	c, cfg := world(t)
	if _, err := run(t, "plan", "-c", cfg, "-json"); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "restore-ttl", "-c", cfg, "-domain", "c1.cli.test")
	if !errors.Is(err, cli.ErrFailures) || !strings.Contains(out, "REFUSED") || !strings.Contains(out, "not switched") {
		t.Errorf("restore-ttl before the switch: %v\n%s", err, out)
	}
	_, err = run(t, "apply", "-c", cfg)
	if !errors.Is(err, dnsctl.ErrThreshold) {
		t.Fatalf("apply of 12 of 20 with max_change_percent 0.5: err = %v, want the threshold", err)
	}
	if err := c.NSUpdate(context.Background(), "zone c2.cli.test.\nupdate add c2.cli.test. 3600 MX 50 hand.edit.test."); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, "apply", "-c", cfg, "-force", "-json")
	if !errors.Is(err, cli.ErrFailures) {
		t.Fatalf("apply with a hand-edited domain: err = %v, want ErrFailures", err)
	}
	var rep dnsctl.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("apply -json: %v\n%s", err, out)
	}
	if rep.Totals["verified"] != 11 || rep.Totals["failed"] != 1 || rep.Totals["skipped"] != 8 {
		t.Errorf("apply totals %v, want 11 verified, 1 failed, 8 skipped", rep.Totals)
	}
	out, err = run(t, "verify", "-c", cfg, "-domain", "c1.cli.test,c3.cli.test")
	if err != nil || strings.Count(out, "VERIFIED") != 2 {
		t.Errorf("verify: %v\n%s", err, out)
	}
	out, err = run(t, "restore-ttl", "-c", cfg, "-domain", "c1.cli.test", "-ttl", "7200")
	if err != nil || !strings.Contains(out, "TTL_RESTORED") || !strings.Contains(out, "TTL 3600 -> 7200") {
		t.Errorf("restore-ttl: %v\n%s", err, out)
	}
	out, err = run(t, "restore-ttl", "-c", cfg, "-domain", "c1.cli.test", "-ttl", "7200")
	if err != nil || !strings.Contains(out, "UNCHANGED") {
		t.Errorf("restore-ttl again: %v\n%s", err, out)
	}
	out, err = run(t, "status", "-c", cfg, "-domain", "c1.cli.test")
	if err != nil || !strings.Contains(out, "c1.cli.test.  verified") || !strings.Contains(out, "3600->7200 at ") {
		t.Errorf("status: %v\n%s", err, out)
	}
	out, err = run(t, "rollback", "-c", cfg, "-all")
	if err != nil || !strings.Contains(out, "rolled_back 11") {
		t.Errorf("rollback -all: %v\n%s", err, out)
	}
}

func TestCommandLineMistakesAreRefusedBeforeAnythingRuns(t *testing.T) {
	tests := []struct {
		args []string
		says string
	}{
		{[]string{"rollback", "-c", "x.yaml"}, "either -domain D or -all"},
		{[]string{"rollback", "-c", "x.yaml", "-all", "-domain", "a.test"}, "either -domain D or -all"},
		{[]string{"lower-ttl", "-c", "x.yaml", "-ttl", "0"}, "-ttl 0"},
		{[]string{"restore-ttl", "-c", "x.yaml", "-ttl", "2147483648"}, "-ttl 2147483648"},
		{[]string{"cutover", "-c", "x.yaml"}, "pass -domain D"},
		{[]string{"fly"}, `unknown command "fly"`},
		{[]string{"plan", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := run(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("err = %v, want it to say %q", err, tt.says)
			}
		})
	}
}
