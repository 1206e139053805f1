package kvjson_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/kvjson"
)

type counter struct {
	N     int      `json:"n"`
	Marks []string `json:"marks,omitempty"`
}

// bucket starts an embedded JetStream server and returns a fresh bucket.
func bucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	srv, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), DontListen: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "kvjson_test", History: 5})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func TestGetOfAbsentKeyIsEmptyEntry(t *testing.T) {
	kv := bucket(t)
	e, err := kvjson.Get[counter](context.Background(), kv, "nope")
	if err != nil {
		t.Fatal(err)
	}
	if e.Exists() || e.Rev != 0 || e.V.N != 0 || e.Key != "nope" {
		t.Errorf("absent key read as %+v", e)
	}
}

func TestValuesAreStoredAsPlainJSON(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	if _, err := kvjson.Create(ctx, kv, "k", counter{N: 3}); err != nil {
		t.Fatal(err)
	}
	raw, err := kv.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(raw.Value()), `{"n":3}`; got != want {
		t.Errorf("stored %s, want %s (json.Marshal of the value)", got, want)
	}
}

func TestCreateOnExistingKeyFailsWithConflict(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	if _, err := kvjson.Create(ctx, kv, "k", counter{N: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := kvjson.Create(ctx, kv, "k", counter{N: 2})
	if !errors.Is(err, kvjson.ErrConflict) || !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("second create: %v, want ErrConflict wrapping ErrKeyExists", err)
	}
	e, err := kvjson.Get[counter](ctx, kv, "k")
	if err != nil {
		t.Fatal(err)
	}
	if e.V.N != 1 {
		t.Errorf("value = %d after a failed create, want the first one, 1", e.V.N)
	}
}

func TestSaveOfStaleEntryFails(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	if _, err := kvjson.Create(ctx, kv, "k", counter{N: 1}); err != nil {
		t.Fatal(err)
	}
	a, _ := kvjson.Get[counter](ctx, kv, "k")
	b, _ := kvjson.Get[counter](ctx, kv, "k")
	a.V.N = 10
	if err := a.Save(ctx, kv); err != nil {
		t.Fatal(err)
	}
	b.V.N = 20
	if err := b.Save(ctx, kv); !errors.Is(err, kvjson.ErrConflict) {
		t.Fatalf("save of a stale entry: %v, want ErrConflict", err)
	}
}

func TestFiftyConcurrentCreatorsExactlyOneWins(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	const creators = 50
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	for i := range creators {
		wg.Go(func() {
			_, err := kvjson.Create(ctx, kv, "once", counter{N: i})
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, kvjson.ErrConflict):
				conflicts.Add(1)
			default:
				t.Errorf("creator %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != creators-1 {
		t.Errorf("%d creators won and %d lost, want 1 and %d", wins.Load(), conflicts.Load(), creators-1)
	}
}

func TestConcurrentUpdatesAllLand(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				if _, err := kvjson.Update(ctx, kv, "n", func(e *kvjson.Entry[counter]) error {
					e.V.N++
					return nil
				}, kvjson.Attempts(100)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	e, err := kvjson.Get[counter](ctx, kv, "n")
	if err != nil {
		t.Fatal(err)
	}
	if e.V.N != writers*each {
		t.Errorf("counter = %d, want %d: an update was lost", e.V.N, writers*each)
	}
}

// racer is a bucket whose first write under a key is preceded by another
// writer's, as if it had come in between the read and the write.
type racer struct {
	jetstream.KeyValue
	raced atomic.Bool
}

func (r *racer) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if !r.raced.Swap(true) {
		if _, err := r.KeyValue.Update(ctx, key, []byte(`{"n":100,"marks":["other"]}`), rev); err != nil {
			return 0, err
		}
	}
	return r.KeyValue.Update(ctx, key, value, rev)
}

func TestUpdateRetriesOnConflictWithNewerState(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	if _, err := kvjson.Create(ctx, kv, "k", counter{N: 1}); err != nil {
		t.Fatal(err)
	}
	r := &racer{KeyValue: kv}
	calls := 0
	e, err := kvjson.Update(ctx, r, "k", func(e *kvjson.Entry[counter]) error {
		calls++
		e.V.N++
		e.V.Marks = append(e.V.Marks, "mine")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("fn called %d times, want 2 (once more after the conflict)", calls)
	}
	got, _ := kvjson.Get[counter](ctx, kv, "k")
	if got.V.N != 101 || len(got.V.Marks) != 2 || got.Rev != e.Rev {
		t.Errorf("stored %+v at rev %d (update returned rev %d), want n=101 with both marks", got.V, got.Rev, e.Rev)
	}
}

func TestUpdateGivesUpAfterAttempts(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	if _, err := kvjson.Create(ctx, kv, "k", counter{}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	_, err := kvjson.Update(ctx, kv, "k", func(e *kvjson.Entry[counter]) error {
		calls++
		// Another writer moves the key every time.
		if _, err := kv.Put(ctx, "k", []byte(`{"n":7}`)); err != nil {
			return err
		}
		e.V.N++
		return nil
	}, kvjson.Attempts(3))
	if !errors.Is(err, kvjson.ErrConflict) || calls != 3 {
		t.Errorf("after %d calls: %v, want 3 calls and ErrConflict", calls, err)
	}
}

func TestUpdateCreatesAbsentKeyAndSkipWritesNothing(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	e, err := kvjson.Update(ctx, kv, "k", func(e *kvjson.Entry[counter]) error {
		if e.Exists() {
			t.Error("absent key read as existing")
		}
		e.V.N = 5
		return nil
	})
	if err != nil || e.Rev == 0 {
		t.Fatalf("create by update: rev %v, %v", e, err)
	}
	rev := e.Rev
	e, err = kvjson.Update(ctx, kv, "k", func(e *kvjson.Entry[counter]) error {
		e.V.N = 6
		return kvjson.ErrSkip
	})
	if err != nil || e.V.N != 6 || e.Rev != rev {
		t.Fatalf("skip: %+v, %v; want the entry as fn left it at rev %d", e, err, rev)
	}
	got, _ := kvjson.Get[counter](ctx, kv, "k")
	if got.V.N != 5 || got.Rev != rev {
		t.Errorf("after skip stored %+v at %d, want n=5 at %d", got.V, got.Rev, rev)
	}
	boom := errors.New("boom")
	if _, err := kvjson.Update(ctx, kv, "k", func(e *kvjson.Entry[counter]) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("fn's error: got %v", err)
	}
}

func TestUndecodableValue(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	if _, err := kv.Put(ctx, "k", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := kvjson.Get[counter](ctx, kv, "k"); err == nil {
		t.Error("Get of an undecodable value succeeded")
	}
	e, err := kvjson.Update(ctx, kv, "k", func(e *kvjson.Entry[counter]) error {
		e.V.N++
		return nil
	}, kvjson.ResetUndecodable())
	if err != nil || e.V.N != 1 {
		t.Errorf("ResetUndecodable: %+v, %v; want a fresh value written", e, err)
	}
}

func TestDeleteWithStaleRevisionKeepsKey(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	rev, err := kvjson.Create(ctx, kv, "k", counter{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte(`{"n":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := kvjson.Delete(ctx, kv, "k", rev); !errors.Is(err, kvjson.ErrConflict) {
		t.Fatalf("delete at a stale revision: %v, want ErrConflict", err)
	}
	e, _ := kvjson.Get[counter](ctx, kv, "k")
	if err := kvjson.Delete(ctx, kv, "k", e.Rev); err != nil {
		t.Fatal(err)
	}
	if e, _ := kvjson.Get[counter](ctx, kv, "k"); e.Exists() {
		t.Error("key still there after delete")
	}
}
