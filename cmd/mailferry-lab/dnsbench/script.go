package dnsbench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/plan"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/zonegen"
)

// scriptMode is how the nsupdate script sends its updates.
type scriptMode string

const (
	// perZone runs one nsupdate process per zone, as a shell loop does.
	// Both modes use TCP (-v), as dnsctl does.
	perZone scriptMode = "nsupdate-per-zone"
	// batch sends every update from one nsupdate process, one after the
	// other.
	batch scriptMode = "nsupdate-batch"
)

// runScript writes and times the update script and then the dig check.
func runScript(ctx context.Context, c *bindtest.Cluster, p *dnsctl.PlanReport, mode scriptMode, dir string) (Timing, error) {
	var t Timing
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return t, err
	}
	domains := switching(p)
	updates := filepath.Join(dir, "update.sh")
	if err := os.WriteFile(updates, []byte(updateScript(c, domains, mode, dir)), 0o755); err != nil {
		return t, err
	}
	check := filepath.Join(dir, "verify.sh")
	if err := os.WriteFile(check, []byte(verifyScript(c, domains, mode, dir)), 0o755); err != nil {
		return t, err
	}
	var err error
	if t.Apply, err = timeScript(ctx, updates); err != nil {
		return t, err
	}
	t.Verify, err = timeScript(ctx, check)
	return t, err
}

func timeScript(ctx context.Context, path string) (time.Duration, error) {
	start := time.Now()
	out, err := exec.CommandContext(ctx, "bash", path).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("bench: %s: %w: %s", path, err, lastLines(string(out), 10))
	}
	return time.Since(start), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// nsupdateCommands is one zone's update as nsupdate commands, with the
// same prerequisites dnsctl sends.
func nsupdateCommands(d plan.Domain) string {
	var b strings.Builder
	fmt.Fprintf(&b, "zone %s\n", d.Domain)
	for _, c := range d.Changes {
		if !c.Old.Exists() {
			fmt.Fprintf(&b, "prereq nxrrset %s %s\n", c.Old.Name, c.Old.Type)
		}
		for _, data := range c.Old.Data {
			fmt.Fprintf(&b, "prereq yxrrset %s %s %s\n", c.Old.Name, c.Old.Type, data)
		}
	}
	for _, c := range d.Changes {
		for _, data := range c.Old.Data {
			if !c.New.Contains(data) {
				fmt.Fprintf(&b, "update delete %s %s %s\n", c.Old.Name, c.Old.Type, data)
			}
		}
	}
	for _, c := range d.Changes {
		for _, data := range c.New.Data {
			if !c.Old.Contains(data) {
				fmt.Fprintf(&b, "update add %s %d %s %s\n", c.New.Name, c.New.TTL, c.New.Type, data)
			}
		}
	}
	b.WriteString("send\n")
	return b.String()
}

func updateScript(c *bindtest.Cluster, domains []plan.Domain, mode scriptMode, dir string) string {
	host, port, _ := strings.Cut(c.Primary.Addr, ":")
	server := fmt.Sprintf("server %s %s\n", host, port)
	var b strings.Builder
	b.WriteString("set -e\n")
	if mode == batch {
		var cmds strings.Builder
		cmds.WriteString(server)
		for _, d := range domains {
			cmds.WriteString(nsupdateCommands(d))
		}
		file := filepath.Join(dir, "batch.txt")
		_ = os.WriteFile(file, []byte(cmds.String()), 0o644)
		fmt.Fprintf(&b, "nsupdate -v -t 60 -k %s %s\n", c.KeyFile, file)
		return b.String()
	}
	for _, d := range domains {
		fmt.Fprintf(&b, "nsupdate -v -t 60 -k %s <<'EOF'\n%s%sEOF\n", c.KeyFile, server, nsupdateCommands(d))
	}
	return b.String()
}

// verifyScript waits until every server answers every switched zone's MX
// query with the new MX host: per query with dig, or with one dig -f batch
// repeated until all answer.
func verifyScript(c *bindtest.Cluster, domains []plan.Domain, mode scriptMode, dir string) string {
	var b strings.Builder
	b.WriteString("set -e\n")
	if mode == batch {
		var q strings.Builder
		for _, s := range c.Servers() {
			host, port, _ := strings.Cut(s.Addr, ":")
			for _, d := range domains {
				fmt.Fprintf(&q, "@%s -p %s %s MX +norec +short\n", host, port, d.Domain)
			}
		}
		file := filepath.Join(dir, "queries.txt")
		_ = os.WriteFile(file, []byte(q.String()), 0o644)
		want := len(domains) * len(c.Servers())
		fmt.Fprintf(&b, "until [ \"$(dig -f %s | grep -c ' %s$')\" -ge %d ]; do sleep 0.2; done\n", file, zonegen.NewMX1, want)
		return b.String()
	}
	b.WriteString("check() { until dig +norec +short -p \"$2\" @\"$1\" \"$3\" MX | grep -q ' " + zonegen.NewMX1 + "$'; do sleep 0.1; done; }\n")
	for _, s := range c.Servers() {
		host, port, _ := strings.Cut(s.Addr, ":")
		for _, d := range domains {
			fmt.Fprintf(&b, "check %s %s %s\n", host, port, d.Domain)
		}
	}
	return b.String()
}
