// Package metrics is what a mailferry daemon tells Prometheus: its
// counters and histograms (Metrics, one registry per process, handed to
// the services through their structs, never global), the readiness
// checks the services add, and the HTTP server of the metrics section
// (Serve: /metrics, /healthz, /readyz).
//
// Every method of *Metrics works on a nil receiver and does nothing, so a
// service run without metrics (tests, the all-in-one runner) needs no
// special case. Labels are bounded: a server side, a command, an outcome,
// a stream and consumer; never a mailbox or folder name.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Ready reports why the service cannot do its work now (nil: it can):
// the broker is not connected, a peer is unreachable.
type Ready func(ctx context.Context) error

// Metrics holds a process's registry and the metrics on it.
type Metrics struct {
	// Registry is what /metrics serves.
	Registry *prometheus.Registry

	extracted   prometheus.Counter
	appended    prometheus.Counter
	bytes       prometheus.Counter
	dead        prometheus.Counter
	retries     *prometheus.CounterVec
	imap        *prometheus.HistogramVec
	dns         *prometheus.CounterVec
	signIns     *prometheus.CounterVec
	passwords   *prometheus.CounterVec
	lockouts    prometheus.Counter
	consumerLag *lagCollector

	mu    sync.Mutex
	ready map[string]Ready
	dials map[string]error
}

// New makes a registry with the Go runtime's and the process's metrics
// and every mailferry metric on it.
func New() *Metrics {
	r := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: r,
		extracted: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailferry_messages_extracted_total",
			Help: "Messages the extractor read from the source and the broker acknowledged."}),
		appended: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailferry_messages_appended_total",
			Help: "Messages the loader appended to the target and recorded in its ledger."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailferry_bytes_appended_total",
			Help: "Bytes of the messages the loader appended to the target."}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailferry_dead_letters_total",
			Help: "Messages the target refused for good, written to the dead letter stream."}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailferry_retries_total",
			Help: "Job attempts that failed and will be retried, by service."}, []string{"service"}),
		imap: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailferry_imap_command_duration_seconds",
			Help:    "Time from sending an IMAP command to its tagged answer, by server (source, target) and command.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}},
			[]string{"server", "command"}),
		dns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailferry_dns_updates_total",
			Help: "DNS switches dnsctl handled, by outcome (switched: applied and verified; unchanged, skipped, failed)."}, []string{"outcome"}),
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailferry_auth_signins_total",
			Help: "Sign-in attempts at the auth service, by outcome."}, []string{"outcome"}),
		passwords: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailferry_auth_password_changes_total",
			Help: "Password changes at the auth service, by outcome."}, []string{"outcome"}),
		lockouts: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailferry_auth_lockouts_total",
			Help: "Accounts or clients the auth service locked out after repeated failures."}),
		consumerLag: &lagCollector{
			pending: prometheus.NewDesc("mailferry_consumer_pending_messages",
				"Messages of a stream a durable consumer of this process has not yet been given (JetStream num_pending), sampled at scrape.",
				[]string{"stream", "consumer"}, nil),
			ackPending: prometheus.NewDesc("mailferry_consumer_ack_pending_messages",
				"Messages a durable consumer of this process has handed out and not yet had acknowledged (jobs in progress), sampled at scrape.",
				[]string{"stream", "consumer"}, nil),
		},
		ready: map[string]Ready{},
		dials: map[string]error{},
	}
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailferry_ready",
		Help: "1 when the process is ready (what /readyz answers 200 to), else 0; checked at scrape."},
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if m.Ready(ctx) != nil {
				return 0
			}
			return 1
		}))
	for _, c := range []prometheus.Collector{m.extracted, m.appended, m.bytes, m.dead, m.retries, m.imap,
		m.dns, m.signIns, m.passwords, m.lockouts, m.consumerLag} {
		f(c)
	}
	return m
}

// Extracted counts n messages extracted.
func (m *Metrics) Extracted(n int) {
	if m != nil && n > 0 {
		m.extracted.Add(float64(n))
	}
}

// Appended counts n messages of size bytes appended.
func (m *Metrics) Appended(n int, size int64) {
	if m != nil && n > 0 {
		m.appended.Add(float64(n))
		m.bytes.Add(float64(size))
	}
}

// DeadLettered counts one dead letter.
func (m *Metrics) DeadLettered() {
	if m != nil {
		m.dead.Inc()
	}
}

// Retried counts a failed job attempt of service that will be tried again.
func (m *Metrics) Retried(service string) {
	if m != nil {
		m.retries.WithLabelValues(service).Inc()
	}
}

// DNSUpdate counts a DNS switch by outcome.
func (m *Metrics) DNSUpdate(outcome string) {
	if m != nil {
		m.dns.WithLabelValues(outcome).Inc()
	}
}

// SignIn counts a sign-in attempt by outcome.
func (m *Metrics) SignIn(outcome string) {
	if m != nil {
		m.signIns.WithLabelValues(outcome).Inc()
	}
}

// PasswordChange counts a password change by outcome.
func (m *Metrics) PasswordChange(outcome string) {
	if m != nil {
		m.passwords.WithLabelValues(outcome).Inc()
	}
}

// Lockout counts one lockout.
func (m *Metrics) Lockout() {
	if m != nil {
		m.lockouts.Inc()
	}
}

// IMAPObserver is what shared/imapdial tells an observer of a server's
// connections (imapdial.Observer, declared here again so that services
// without IMAP do not link it).
type IMAPObserver interface {
	Command(name string, took time.Duration)
	Dialed(err error)
}

// IMAP is the observer of the connections to server ("source" or
// "target"): it times their commands and keeps their last dial's outcome
// for Ready. nil when m is.
func (m *Metrics) IMAP(server string) IMAPObserver {
	if m == nil {
		return nil
	}
	return &imapObserver{m: m, server: server}
}

type imapObserver struct {
	m      *Metrics
	server string
}

// imapCommands are the commands timed by name; others count as OTHER, so
// that the command label stays bounded whatever a server is sent.
var imapCommands = map[string]bool{
	"LOGIN": true, "AUTHENTICATE": true, "CAPABILITY": true, "STARTTLS": true, "ID": true, "ENABLE": true,
	"LIST": true, "LSUB": true, "STATUS": true, "SELECT": true, "EXAMINE": true, "CREATE": true, "DELETE": true,
	"RENAME": true, "SUBSCRIBE": true, "APPEND": true, "FETCH": true, "STORE": true, "SEARCH": true,
	"UID FETCH": true, "UID STORE": true, "UID SEARCH": true, "UID EXPUNGE": true, "EXPUNGE": true, "CLOSE": true,
	"UNSELECT": true, "NOOP": true, "LOGOUT": true, "IDLE": true, "NAMESPACE": true, "GETQUOTAROOT": true,
}

// Command implements IMAPObserver.
func (o *imapObserver) Command(name string, took time.Duration) {
	if !imapCommands[name] {
		name = "OTHER"
	}
	o.m.imap.WithLabelValues(o.server, name).Observe(took.Seconds())
}

// Dialed implements IMAPObserver.
func (o *imapObserver) Dialed(err error) {
	o.m.mu.Lock()
	defer o.m.mu.Unlock()
	o.m.dials[o.server] = err
}

// AddReady adds a readiness check under name (one per name: a second
// replaces the first).
func (m *Metrics) AddReady(name string, r Ready) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ready[name] = r
}

// Ready runs every readiness check and reports, besides, every IMAP server
// whose last dial failed (without dialling: a probe must stay cheap).
func (m *Metrics) Ready(ctx context.Context) error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	names := make([]string, 0, len(m.ready))
	checks := make(map[string]Ready, len(m.ready))
	for n, r := range m.ready {
		names = append(names, n)
		checks[n] = r
	}
	var errs []error
	for server, err := range m.dials {
		if err != nil {
			errs = append(errs, fmt.Errorf("imap %s: last dial failed: %w", server, err))
		}
	}
	m.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		if err := checks[n](ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// WatchConsumer has the durable consumer of stream sampled at every scrape
// (mailferry_consumer_pending_messages).
func (m *Metrics) WatchConsumer(js jetstream.JetStream, stream, durable string) {
	if m == nil {
		return
	}
	m.consumerLag.add(js, stream, durable)
}

// lagCollector reads the watched consumers' num_pending at scrape.
type lagCollector struct {
	pending, ackPending *prometheus.Desc

	mu      sync.Mutex
	watched []watchedConsumer
}

type watchedConsumer struct {
	js              jetstream.JetStream
	stream, durable string
}

func (c *lagCollector) add(js jetstream.JetStream, stream, durable string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.watched {
		if w.stream == stream && w.durable == durable {
			return
		}
	}
	c.watched = append(c.watched, watchedConsumer{js: js, stream: stream, durable: durable})
}

// Describe implements prometheus.Collector.
func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
}

// Collect implements prometheus.Collector: a consumer the broker cannot
// be asked about now is left out of the scrape (its series goes stale).
func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	watched := append([]watchedConsumer(nil), c.watched...)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, w := range watched {
		cons, err := w.js.Consumer(ctx, w.stream, w.durable)
		if err != nil {
			continue
		}
		info := cons.CachedInfo()
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), w.stream, w.durable)
		ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), w.stream, w.durable)
	}
}
