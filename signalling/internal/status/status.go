package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"
)

// Source is one part of the server that reports its status: what the
// operator page shows of it. The value must encode as JSON; the numbers
// at its top level (a JSON object's number members) are what the history
// samples.
type Source interface {
	Status(ctx context.Context) (any, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context) (any, error)

// Status implements Source.
func (f SourceFunc) Status(ctx context.Context) (any, error) { return f(ctx) }

// Defaults: issue 7 asks for the last 60 samples taken every 10 s (ten
// minutes of charts).
const (
	DefaultInterval = 10 * time.Second
	DefaultSamples  = 60
	DefaultTimeout  = 5 * time.Second
)

// maxNumbers bounds the numbers kept per sample, so that a source whose
// status grows a field per user cannot grow the history with it.
const maxNumbers = 16

// Config configures the service.
type Config struct {
	// Interval is the time between samples; 0 means DefaultInterval.
	Interval time.Duration
	// Samples is how many samples each source's ring keeps; 0 means
	// DefaultSamples.
	Samples int
	// Timeout bounds each source's answer; 0 means DefaultTimeout. The
	// source's context ends then, and its answer counts as an error.
	Timeout time.Duration
}

// Deps are the service's collaborators.
type Deps struct {
	// Sources are the named parts of the server; the name is the key of
	// its status in a snapshot.
	Sources map[string]Source
	// Sampled names the sources whose numbers the history keeps (the
	// cheap ones: a source that reads much of the database should be
	// asked only when the operator looks); nil means every source.
	Sampled []string
	Logger  *slog.Logger
	// Now is the clock of the samples' timestamps; nil means time.Now.
	Now func() time.Time
	// Tick, if set, replaces the sampling timer: one sample per value
	// received (tests).
	Tick <-chan time.Time
}

// Sample is the numbers of one source's status at one time.
type Sample struct {
	// TS is when the sample was taken, in milliseconds since the epoch.
	TS     int64              `json:"ts"`
	Values map[string]float64 `json:"values"`
	// Error, if set, says why the source gave no numbers this time.
	Error string `json:"error,omitempty"`
}

// History is the samples of every sampled source, oldest first.
type History struct {
	IntervalMS int64               `json:"interval_ms"`
	Sources    map[string][]Sample `json:"sources"`
}

// Service answers status snapshots and keeps the history.
type Service struct {
	cfg     Config
	sources map[string]Source
	sampled []string
	log     *slog.Logger
	now     func() time.Time

	mu    sync.Mutex // guards rings
	rings map[string]*ring

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New builds the service and starts sampling; Close stops it.
func New(cfg Config, deps Deps) (*Service, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Samples <= 0 {
		cfg.Samples = DefaultSamples
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &Service{
		cfg: cfg, sources: map[string]Source{}, log: deps.Logger, now: deps.Now,
		rings: map[string]*ring{}, stop: make(chan struct{}), done: make(chan struct{}),
	}
	for name, src := range deps.Sources {
		if src == nil {
			return nil, fmt.Errorf("status: source %q is nil", name)
		}
		s.sources[name] = src
	}
	sampled := deps.Sampled
	if sampled == nil {
		for name := range s.sources {
			sampled = append(sampled, name)
		}
	}
	for _, name := range sampled {
		if s.sources[name] == nil {
			return nil, fmt.Errorf("status: sampled source %q is not a source", name)
		}
		if _, dup := s.rings[name]; !dup {
			s.rings[name] = newRing(cfg.Samples)
			s.sampled = append(s.sampled, name)
		}
	}
	sort.Strings(s.sampled)
	go s.run(deps.Tick)
	return s, nil
}

// Close stops sampling and waits for a sample in progress. It is
// idempotent.
func (s *Service) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// run samples every interval (or tick) until Close.
func (s *Service) run(tick <-chan time.Time) {
	defer close(s.done)
	if len(s.sampled) == 0 {
		<-s.stop
		return
	}
	if tick == nil {
		t := time.NewTicker(s.cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	for {
		select {
		case <-s.stop:
			return
		case <-tick:
			s.sample(ctx)
		}
	}
}

// sample asks every sampled source and adds its numbers to its ring.
func (s *Service) sample(ctx context.Context) {
	results := s.ask(ctx, s.sampled)
	ts := s.now().UnixMilli()
	samples := make(map[string]Sample, len(results))
	for name, r := range results {
		smp := Sample{TS: ts}
		if r.err != nil {
			smp.Error = r.err.Error()
		} else if smp.Values, r.err = numbers(r.value); r.err != nil {
			smp.Error = r.err.Error()
		}
		if smp.Error != "" && ctx.Err() == nil {
			s.log.Debug("status sample failed", "source", name, "err", smp.Error)
		}
		samples[name] = smp
	}
	if ctx.Err() != nil {
		return // closing: a cut-short sample is not a failure of the source
	}
	s.mu.Lock()
	for name, smp := range samples {
		s.rings[name].add(smp)
	}
	s.mu.Unlock()
}

// Snapshot asks every source for its status at once. A source that fails
// or does not answer within the timeout is reported as {"error": ...},
// so one broken part does not hide the others.
func (s *Service) Snapshot(ctx context.Context) map[string]any {
	names := make([]string, 0, len(s.sources))
	for name := range s.sources {
		names = append(names, name)
	}
	out := make(map[string]any, len(names))
	for name, r := range s.ask(ctx, names) {
		if r.err != nil {
			out[name] = map[string]string{"error": r.err.Error()}
			continue
		}
		out[name] = r.value
	}
	return out
}

// History returns a copy of every ring.
func (s *Service) History() History {
	h := History{IntervalMS: s.cfg.Interval.Milliseconds(), Sources: map[string][]Sample{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, r := range s.rings {
		h.Sources[name] = r.list()
	}
	return h
}

type answer struct {
	value any
	err   error
}

// ask calls the named sources concurrently, each under the timeout.
func (s *Service) ask(ctx context.Context, names []string) map[string]answer {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex // guards out
		out = make(map[string]answer, len(names))
	)
	for _, name := range names {
		src := s.sources[name]
		wg.Go(func() {
			c, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
			defer cancel()
			v, err := call(c, src)
			if err == nil && c.Err() != nil {
				err = c.Err()
			}
			mu.Lock()
			out[name] = answer{value: v, err: err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// call asks src, turning a panic into an error: the operator page must
// not take the server down with it.
func call(ctx context.Context, src Source) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("status source panicked: %v", r)
		}
	}()
	return src.Status(ctx)
}

// numbers picks the number members at the top level of v's JSON form,
// at most maxNumbers of them (the first by name).
func numbers(v any) (map[string]float64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("status: encode: %w", err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, errors.New("status: not a JSON object")
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := map[string]float64{}
	for _, k := range keys {
		if len(out) == maxNumbers {
			break
		}
		raw := obj[k]
		if len(raw) == 0 || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
			continue
		}
		var f float64
		if json.Unmarshal(raw, &f) == nil {
			out[k] = f
		}
	}
	return out, nil
}

// ring keeps the last len(buf) samples.
type ring struct {
	buf  []Sample
	next int  // where the next sample goes
	full bool // every slot holds a sample
}

func newRing(n int) *ring { return &ring{buf: make([]Sample, n)} }

func (r *ring) add(s Sample) {
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// list returns the samples oldest first.
func (r *ring) list() []Sample {
	if !r.full {
		return slices.Clone(r.buf[:r.next])
	}
	return append(slices.Clone(r.buf[r.next:]), r.buf[:r.next]...)
}
