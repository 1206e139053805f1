package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// rigPackage matches what only tests and the lab may link: the testing
// package, test environments (*/testenv/*) and the lab's own commands.
// go-imap's in-memory server is not one: `mailferry demo` runs on it.
var rigPackage = regexp.MustCompile(`^testing$|/testenv(/|$)|/cmd/mailferry-lab(/|$)`)

// rigsLinked lists the rig packages in the dependencies of the binary built
// from pkg (a directory relative to the workspace root).
func rigsLinked(t *testing.T, root, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", pkg)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var rigs []string
	for _, dep := range strings.Fields(string(out)) {
		if rigPackage.MatchString(dep) {
			rigs = append(rigs, dep)
		}
	}
	return rigs
}

func TestShippedBinariesLinkNoTestRigOrDevTool(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := filepath.Glob(filepath.Join(root, "services/*/cmd/*"))
	if err != nil || len(shipped) < 4 {
		t.Fatalf("service binaries under services/*/cmd: %v (%v)", shipped, err)
	}
	shipped = append(shipped, filepath.Join(root, "cmd/mailferry"))
	for _, dir := range shipped {
		rel, _ := filepath.Rel(root, dir)
		if rigs := rigsLinked(t, root, "./"+rel); len(rigs) > 0 {
			t.Errorf("%s links test rigs or dev tools: %v", rel, rigs)
		}
	}
}

func TestRigGuardCatchesTheLab(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	rigs := strings.Join(rigsLinked(t, root, "./cmd/mailferry-lab"), " ")
	for _, want := range []string{"/shared/testenv/dovecottest", "/services/dnsctl/testenv/bindtest", "/cmd/mailferry-lab/chaos"} {
		if !strings.Contains(" "+rigs, want) {
			t.Errorf("the guard does not see %s in the lab binary (saw %s)", want, rigs)
		}
	}
}
