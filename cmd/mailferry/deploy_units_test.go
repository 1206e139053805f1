package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// deployDir is deploy/, the examples operators copy.
const deployDir = "../../deploy"

// longRunning says, for every command of mailferry, whether it runs until
// it is stopped (a daemon, which needs a unit in deploy/systemd) or does
// one thing and exits. A command added to the table must be added here.
var longRunning = map[string]bool{
	"extractor": true, "loader": true, "dnsctl": true, "auth": true,
	"cutover run": true, "delta": true, "nats": true, "dashboard": true,

	"demo": false, "migrate": false, "verify": false, "verify accept": false,
	"status": false, "enqueue": false, "replay": false,
	"deadletter list": false, "deadletter show": false, "deadletter retry": false,
	"cutover plan": false, "cutover start": false, "cutover status": false,
	"cutover pause": false, "cutover resume": false, "cutover abort": false,
	"cutover retry": false, "cutover close": false,
	"dns plan": false, "dns apply": false, "dns verify": false, "dns rollback": false,
	"dns lower-ttl": false, "dns restore-ttl": false, "dns status": false, "dns cutover": false,
	"users import":            false,
	"users import-mailenable": false, "users list": false, "provision": false,
}

// unitCommand is what a unit's ExecStart runs: the mailferry command (a
// service binary mailferry-X runs command X) and the configuration file it
// names; program is the binary's name.
type unitCommand struct{ program, command, file string }

// execStart reads the ExecStart line of a systemd unit.
func execStart(t *testing.T, unit string) unitCommand {
	t.Helper()
	var line string
	for _, l := range strings.Split(readFile(t, unit), "\n") {
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			if line != "" {
				t.Fatalf("%s: two ExecStart lines", unit)
			}
			line = v
		}
	}
	words := strings.Fields(line)
	if len(words) == 0 {
		t.Fatalf("%s: no ExecStart", unit)
	}
	uc := unitCommand{program: filepath.Base(words[0])}
	var cmd []string
	switch prog := uc.program; {
	case prog == "mailferry":
	case strings.HasPrefix(prog, "mailferry-"):
		cmd = append(cmd, strings.TrimPrefix(prog, "mailferry-"))
	default:
		t.Fatalf("%s: ExecStart runs %s, not mailferry", unit, words[0])
	}
	for i := 1; i < len(words); i++ {
		switch w := words[i]; {
		case (w == "-c" || w == "-config") && i+1 < len(words):
			uc.file = words[i+1]
			i++
		case !strings.HasPrefix(w, "-"):
			cmd = append(cmd, w)
		}
	}
	uc.command = strings.Join(cmd, " ")
	return uc
}

// TestEveryDaemonHasAUnitThatNamesADeployedConfigFile checks
// deploy/systemd against the command table: every long-running command
// has a unit, every unit runs one, and the file it names is one of
// deploy/'s examples (nats's node.conf is nats/node1.conf .. node3.conf
// installed under that name). A service binary (mailferry-X) must exist
// in services/X/cmd.
func TestEveryDaemonHasAUnitThatNamesADeployedConfigFile(t *testing.T) {
	for _, c := range program.Commands {
		if _, ok := longRunning[c.Name]; !ok {
			t.Errorf("command %q: say in longRunning whether it is a daemon (then it needs a unit in deploy/systemd)", c.Name)
		}
	}
	units, err := filepath.Glob(filepath.Join(deployDir, "systemd", "*.service"))
	if err != nil || len(units) == 0 {
		t.Fatalf("no units in deploy/systemd: %v", err)
	}
	covered := map[string]string{}
	for _, u := range units {
		uc := execStart(t, u)
		name := filepath.Base(u)
		if !longRunning[uc.command] {
			t.Errorf("%s runs %q, which is not a long-running command", name, uc.command)
		}
		if prev, ok := covered[uc.command]; ok {
			t.Errorf("%s and %s both run %q", prev, name, uc.command)
		}
		covered[uc.command] = name
		if uc.file == "" {
			t.Errorf("%s: ExecStart names no configuration file (-c or -config)", name)
			continue
		}
		example := filepath.Join(deployDir, filepath.Base(uc.file))
		if uc.command == "nats" {
			example = filepath.Join(deployDir, "nats", "node1.conf")
			if filepath.Base(uc.file) != "node.conf" {
				t.Errorf("%s: nats reads %s, want the node's node.conf", name, uc.file)
			}
		}
		if _, err := os.Stat(example); err != nil {
			t.Errorf("%s: %s is not one of deploy/'s files: %v", name, uc.file, err)
		}
		if svc, ok := strings.CutPrefix(uc.program, "mailferry-"); ok {
			if _, err := os.Stat(filepath.Join("../../services", svc, "cmd", uc.program)); err != nil {
				t.Errorf("%s: no service binary %s: %v", name, uc.program, err)
			}
		}
	}
	for cmd, daemon := range longRunning {
		if daemon && covered[cmd] == "" {
			t.Errorf("daemon %q has no unit in deploy/systemd", cmd)
		}
	}
}
