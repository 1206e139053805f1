package broker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"
)

// TestAServiceSignsInWithAnNKeySeedKeptSecret signs in to a server whose
// authorization block names the user by its public NKey, with the seed
// in nats.nkey_file: accepted from a 0600 file, refused (naming the file
// and its mode, never the seed) from one others may read, and refused by
// the server for a seed it does not know.
func TestAServiceSignsInWithAnNKeySeedKeptSecret(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	stranger, _ := nkeys.CreateUser()
	strangerSeed, _ := stranger.Seed()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	dir := t.TempDir()
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		refused string
	}{
		{"a 0600 seed file", append([]byte("# nk -gen user\n"), seed...), 0o600, ""},
		{"a seed file others may read", seed, 0o644, "mode 0644"},
		{"a seed the server does not know", strangerSeed, 0o600, "connect to nats"},
		{"a file without a seed", []byte("not a seed\n"), 0o600, "no user seed"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("user%d.nk", i))
			if err := os.WriteFile(path, tt.content, tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cfg := natsConfig(t, fmt.Sprintf("nats: {url: %s, nkey_file: %s, inbox_prefix: _INBOX.svc}\n", srv.ClientURL(), path))
			b, err := Connect(ctx, cfg, "test", zerolog.Nop())
			if tt.refused == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				if !strings.HasPrefix(b.Conn.NewRespInbox(), "_INBOX.svc.") {
					t.Errorf("inbox %s, want under _INBOX.svc", b.Conn.NewRespInbox())
				}
				return
			}
			if err == nil {
				b.Close()
				t.Fatalf("signed in, want it refused (%s)", tt.refused)
			}
			if !strings.Contains(err.Error(), tt.refused) {
				t.Errorf("err = %v, want it to say %q", err, tt.refused)
			}
			if strings.Contains(err.Error(), string(seed)) || strings.Contains(err.Error(), string(strangerSeed)) {
				t.Errorf("err = %v shows the seed", err)
			}
		})
	}
}
