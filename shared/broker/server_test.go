package broker

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeServerConf(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestServerOptionsRefuseAListenerWithoutAuthentication(t *testing.T) {
	const users = "authorization { users: [{user: mailferry, password: secret1}] }\n"
	const routes = "cluster { name: c, listen: 127.0.0.1:-1, authorization { user: route, password: secret2 } }\n"
	tests := []struct {
		name, conf string
		// refused is part of the error; "" when the file is accepted.
		refused string
	}{
		{"users, route credentials, loopback monitoring", users + routes + "http: 127.0.0.1:8222\n", ""},
		{"a user and password", "authorization { user: a, password: b }\n", ""},
		{"no authorization", "listen: 127.0.0.1:4222\n", "clients may connect without authentication"},
		{"no_auth_user", users + "no_auth_user: mailferry\n", "no_auth_user mailferry"},
		{"a cluster port without route credentials", users + "cluster { name: c, listen: 127.0.0.1:-1 }\n", "the cluster port accepts routes without authentication"},
		{"monitoring on every address", users + "http: 0.0.0.0:8222\n", `monitoring port listens on "0.0.0.0"`},
		{"monitoring on the clients' address", users + "listen: 0.0.0.0:4222\nhttp_port: 8222\n", "monitoring port"},
		{"a leafnode listener", users + "leafnodes { listen: 127.0.0.1:7422 }\n", "leafnodes listener"},
		{"a websocket listener", users + "websocket { listen: 127.0.0.1:8080, no_tls: true }\n", "websocket listener"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeServerConf(t, t.TempDir(), "nats.conf", tt.conf)
			_, err := ServerOptions(path)
			if tt.refused == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.refused) {
				t.Fatalf("err = %v, want it to say %q", err, tt.refused)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("err = %v, want it to name the file", err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("err = %v shows a password", err)
			}
		})
	}
}

func TestServerOptionsTakeAPasswordNotInTheFileFromTheEnvironment(t *testing.T) {
	t.Setenv("MF_TEST_SERVICES_PASSWORD", "pFromTheEnvironment")
	path := writeServerConf(t, t.TempDir(), "nats.conf", "authorization { users: [{user: mailferry, password: $MF_TEST_SERVICES_PASSWORD}] }\n")
	opts, err := ServerOptions(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Users) != 1 || opts.Users[0].Password != "pFromTheEnvironment" {
		t.Fatalf("users = %+v, want mailferry with the environment's password", opts.Users)
	}
}

// TestCommittedClusterFilesAreAcceptedWithTheSecretsMadeForThem reads
// deploy/nats's node files as committed, with the secrets.conf
// make-secrets.sh writes beside them.
func TestCommittedClusterFilesAreAcceptedWithTheSecretsMadeForThem(t *testing.T) {
	deploy := filepath.Join("..", "..", "deploy", "nats")
	dir := t.TempDir()
	hosts := []string{"nats1.internal:6222", "nats2.internal:6222", "nats3.internal:6222"}
	if out, err := exec.Command(filepath.Join(deploy, "make-secrets.sh"), append([]string{dir}, hosts...)...).CombinedOutput(); err != nil {
		t.Fatalf("make-secrets.sh: %v\n%s", err, out)
	}
	users := []string{"extractor", "loader", "dnsctl", "auth", "operator", "cutover", "delta"}
	made := []string{"secrets.conf", "passwords.conf"}
	for _, u := range users {
		made = append(made, "nats-"+u+".password")
	}
	for _, name := range made {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	if out, err := exec.Command(filepath.Join(deploy, "make-secrets.sh"), append([]string{dir}, hosts...)...).CombinedOutput(); err == nil {
		t.Errorf("make-secrets.sh overwrote existing secrets:\n%s", out)
	}
	passwords := map[string]string{}
	for _, u := range users {
		pw, err := os.ReadFile(filepath.Join(dir, "nats-"+u+".password"))
		if err != nil {
			t.Fatal(err)
		}
		passwords[u] = strings.TrimSpace(string(pw))
	}
	for _, name := range []string{"cluster.conf", "users.conf", "node1.conf", "node2.conf", "node3.conf"} {
		b, err := os.ReadFile(filepath.Join(deploy, name))
		if err != nil {
			t.Fatal(err)
		}
		writeServerConf(t, dir, name, string(b))
	}
	for i, node := range []string{"nats1", "nats2", "nats3"} {
		opts, err := ServerOptions(filepath.Join(dir, "node"+string(rune('1'+i))+".conf"))
		if err != nil {
			t.Fatal(err)
		}
		if opts.ServerName != node || opts.Cluster.Name != "mailferry" || !opts.JetStream || opts.StoreDir != "/var/lib/mailferry-nats" {
			t.Errorf("%s: server_name %q, cluster %q, jetstream %v, store_dir %q", node, opts.ServerName, opts.Cluster.Name, opts.JetStream, opts.StoreDir)
		}
		if len(opts.Routes) != 3 || opts.Routes[0].User.Username() != "route" {
			t.Errorf("%s: routes %v, want the three nodes with the route user", node, routeHosts(opts))
		}
		if p, _ := opts.Routes[0].User.Password(); p != opts.Cluster.Password || p == "" {
			t.Errorf("%s: the routes do not carry the route password", node)
		}
		if len(opts.Users) != len(users) {
			t.Errorf("%s: %d users, want %d", node, len(opts.Users), len(users))
		}
		for _, u := range opts.Users {
			if u.Password != passwords[u.Username] || u.Password == "" {
				t.Errorf("%s: user %s does not have the password of nats-%s.password", node, u.Username, u.Username)
			}
			// Only the operator and the daemons that run its commands
			// may do everything.
			limited := !slices.Contains([]string{"operator", "cutover", "delta"}, u.Username)
			if limited != (u.Permissions != nil) {
				t.Errorf("%s: user %s has permissions %v, want limited %v", node, u.Username, u.Permissions, limited)
			}
		}
		if opts.SyncAlways {
			t.Errorf("%s: sync_interval always is set; the file documents it commented", node)
		}
	}
}
