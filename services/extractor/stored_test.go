package extractor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

func TestALargeBodyThatDoesNotReadBackAsStoredIsRefusedAndDeleted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	// A server the extractor reaches over the network (it checks only
	// there: a server in its own process cannot store a body wrong).
	port := freePort(t)
	imaptest.Broker(t, ctx, fmt.Sprintf("nats: {data_dir: %s/nats, listen: 127.0.0.1:%d}\n", dir, port), dir)
	_, b := imaptest.Broker(t, ctx, fmt.Sprintf("nats: {data_dir: %s/nats, url: nats://127.0.0.1:%d}\n", dir, port), dir)
	if b.Embedded() {
		t.Fatal("the extractor's broker is embedded")
	}
	fx := &folderExtraction{svc: &Service{Broker: b}, log: zerolog.Nop()}
	body := bytes.Repeat([]byte("0123456789abcdef"), 3*bodyChunkBytes/16+5) // four chunks, the last short
	sum := sha256.Sum256(body)
	chunks := "$O." + broker.StoreBodies + ".C."
	st, err := b.JS.Stream(ctx, "OBJ_"+broker.StoreBodies)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		// spoil does to the stored chunks what a faulty store did.
		spoil   func(t *testing.T, info *jetstream.ObjectInfo)
		wantErr bool
	}{
		{name: "stored once", spoil: func(*testing.T, *jetstream.ObjectInfo) {}},
		{
			// A publish repeated after a lost acknowledgement: the
			// same chunk twice on the object's chunk subject.
			name: "a chunk stored twice", wantErr: true,
			spoil: func(t *testing.T, info *jetstream.ObjectInfo) {
				t.Helper()
				if _, err := b.JS.Publish(ctx, chunks+info.NUID, body[:bodyChunkBytes]); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			// A publish repeated after "no responders" from the one
			// message nats.go reuses for every chunk: the first
			// chunk missing, a later chunk's bytes after the last.
			// As many chunks as were sent.
			name: "a chunk repeated with another chunk's bytes", wantErr: true,
			spoil: func(t *testing.T, info *jetstream.ObjectInfo) {
				t.Helper()
				first, err := st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(chunks+info.NUID))
				if err != nil {
					t.Fatal(err)
				}
				if err := st.DeleteMsg(ctx, first.Sequence); err != nil {
					t.Fatal(err)
				}
				if _, err := b.JS.Publish(ctx, chunks+info.NUID, body[3*bodyChunkBytes:]); err != nil {
					t.Fatal(err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "body/" + tc.name
			info, err := b.Bodies.Put(ctx, jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: bodyChunkBytes}}, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			tc.spoil(t, info)
			err = fx.checkStored(ctx, name, int64(len(body)), hex.EncodeToString(sum[:]))
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("checkStored: %v", err)
				}
				if _, err := b.Bodies.GetBytes(ctx, name); err != nil {
					t.Errorf("the body: %v", err)
				}
				return
			}
			if !errors.Is(err, errStoredWrong) {
				t.Fatalf("checkStored: %v, want errStoredWrong", err)
			}
			if _, err := b.Bodies.GetInfo(ctx, name); !errors.Is(err, jetstream.ErrObjectNotFound) {
				t.Errorf("the spoilt body is still there: %v", err)
			}
		})
	}
}

// TestABodyStoredOnAServerInTheProcessIsNotReadBack: the embedded server
// (migrate) cannot store a body other than it was sent; the extractor
// does not pay for reading it back.
func TestABodyStoredOnAServerInTheProcessIsNotReadBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	_, b := imaptest.Broker(t, ctx, "nats: {data_dir: "+dir+"/nats}\n", dir)
	fx := &folderExtraction{svc: &Service{Broker: b}, log: zerolog.Nop()}
	// An object that does not exist would fail a read-back.
	if err := fx.checkStored(ctx, "no-such-object", 10, "00"); err != nil {
		t.Fatalf("checkStored on an embedded broker: %v, want no read-back", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
