package extractor

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

func TestABodyStoredWithADuplicatedChunkIsRefusedAndDeleted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	_, b := imaptest.Broker(t, ctx, "nats: {data_dir: "+dir+"/nats}\n", dir)
	fx := &folderExtraction{svc: &Service{Broker: b}, log: zerolog.Nop()}
	body := bytes.Repeat([]byte("0123456789abcdef"), 3*bodyChunkBytes/16+5) // four chunks
	put := func(name string) *jetstream.ObjectInfo {
		t.Helper()
		info, err := b.Bodies.Put(ctx, jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: bodyChunkBytes}}, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return info
	}

	good := put("good")
	if err := fx.checkStored(ctx, good); err != nil {
		t.Fatalf("a body stored once: %v", err)
	}

	bad := put("bad")
	// What a publish repeated after a lost acknowledgement leaves: the
	// same chunk twice on the object's chunk subject.
	if _, err := b.JS.Publish(ctx, "$O."+broker.StoreBodies+".C."+bad.NUID, body[:bodyChunkBytes]); err != nil {
		t.Fatal(err)
	}
	err := fx.checkStored(ctx, bad)
	if !errors.Is(err, errChunksDuplicated) {
		t.Fatalf("a body with a duplicated chunk: %v, want errChunksDuplicated", err)
	}
	if _, err := b.Bodies.GetInfo(ctx, "bad"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("the bad body is still there: %v", err)
	}
	if _, err := b.Bodies.GetBytes(ctx, "good"); err != nil {
		t.Errorf("the good body: %v", err)
	}
}
