package metrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestConsumerLagIsSampledFromTheBrokerAtScrape(t *testing.T) {
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
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "JOBS", Subjects: []string{"jobs.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "JOBS", jetstream.ConsumerConfig{Durable: "worker", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := js.Publish(ctx, "jobs.x", []byte("j")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cons.Fetch(2); err != nil { // two handed out, not acknowledged
		t.Fatal(err)
	}
	m := New()
	m.WatchConsumer(js, "JOBS", "worker")
	m.WatchConsumer(js, "JOBS", "worker") // once is enough
	m.WatchConsumer(js, "JOBS", "gone")   // left out, not an error
	got := map[string]float64{}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if mt.GetGauge() != nil {
				got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = mt.GetGauge().GetValue()
			}
		}
	}
	for series, want := range map[string]float64{
		"mailferry_consumer_pending_messages{consumer=worker,stream=JOBS}":     3,
		"mailferry_consumer_ack_pending_messages{consumer=worker,stream=JOBS}": 2,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	for series := range got {
		if strings.Contains(series, "consumer=gone") {
			t.Errorf("%s: a consumer the broker does not have is sampled", series)
		}
	}
}
