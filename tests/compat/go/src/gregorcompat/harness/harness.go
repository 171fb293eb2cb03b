// Package harness runs the flows of gregor's client-compatibility suite
// (tests/compat/README.md) for a Go driver: one JSON line per flow on stdout, each flow under its
// own deadline in its own goroutine (a hung flow is abandoned, the others go on), a watchdog for
// the whole run, progress on stderr.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Outcome ends a flow with a result other than pass (skip, xfail) or an explicit fail.
type Outcome struct {
	Result string
	Detail string
}

func (o *Outcome) Error() string { return o.Result + ": " + o.Detail }

// Skip: the client does not offer the flow.
func Skip(format string, args ...interface{}) error {
	return &Outcome{"skip", fmt.Sprintf(format, args...)}
}

// XFail: a gap gregor knows about.
func XFail(format string, args ...interface{}) error {
	return &Outcome{"xfail", fmt.Sprintf(format, args...)}
}

// Failf: a check did not hold (expected vs got).
func Failf(format string, args ...interface{}) error {
	return &checkFailed{fmt.Sprintf(format, args...)}
}

type checkFailed struct{ msg string }

func (c *checkFailed) Error() string { return c.msg }

// Flow is what a flow function gets.
type Flow struct {
	Name     string
	Ctx      context.Context
	Deadline time.Time
	began    time.Time
	mu       sync.Mutex
	stage    string
	inCall   bool
	notes    []string
	cleanups []func()
}

// Stage labels what the flow is doing (reported when it times out or fails).
func (f *Flow) Stage(s string) {
	f.mu.Lock()
	f.stage = s
	f.mu.Unlock()
	Logf("  %s +%.1fs: %s", f.Name, time.Since(f.began).Seconds(), s)
}

// Call marks the start of the call under test (for unsupported:<call> lines): an error before
// it is a failed setup, not the missing API.
func (f *Flow) Call(s string) {
	f.Stage(s)
	f.mu.Lock()
	f.inCall = true
	f.mu.Unlock()
}

func (f *Flow) state() (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stage, f.inCall
}

// Note adds a remark to the detail of a passing flow.
func (f *Flow) Note(format string, args ...interface{}) {
	n := fmt.Sprintf(format, args...)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range f.notes {
		if o == n {
			return
		}
	}
	f.notes = append(f.notes, n)
}

// NotesSoFar returns the notes made so far.
func (f *Flow) NotesSoFar() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{}, f.notes...)
}

// Defer registers a cleanup, run (bounded) after the flow.
func (f *Flow) Defer(fn func()) {
	f.mu.Lock()
	f.cleanups = append(f.cleanups, fn)
	f.mu.Unlock()
}

// Left is the time before the flow's deadline, at most limit (0: no cap), at least 100 ms.
func (f *Flow) Left(limit time.Duration) time.Duration {
	d := time.Until(f.Deadline)
	if d < 100*time.Millisecond {
		d = 100 * time.Millisecond
	}
	if limit > 0 && d > limit {
		d = limit
	}
	return d
}

// Sub is a context bounded by the flow's deadline and limit.
func (f *Flow) Sub(limit time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(f.Ctx, f.Left(limit))
}

// Unique is a topic or group name for this flow: a prefix of the flow name plus a random suffix.
func (f *Flow) Unique(kind string) string {
	return UniqueName(f.Name, kind)
}

// UniqueName: flow name (sanitised) + kind + random suffix.
func UniqueName(flow, kind string) string {
	var b strings.Builder
	for _, c := range flow {
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteRune('-')
		}
	}
	if kind != "" {
		b.WriteString("-" + kind)
	}
	buf := make([]byte, 4)
	_, _ = rand.Read(buf)
	b.WriteString("-" + hex.EncodeToString(buf))
	return b.String()
}

// WaitUntil polls pred until it returns true, the limit passes or the flow's deadline.
func (f *Flow) WaitUntil(limit time.Duration, what string, pred func() (bool, error)) error {
	end := time.Now().Add(f.Left(limit))
	var lastErr error
	for {
		ok, err := pred()
		if ok {
			return nil
		}
		lastErr = err
		if time.Now().After(end) {
			if lastErr != nil {
				return Failf("gave up waiting for %s (last error: %v)", what, lastErr)
			}
			return Failf("gave up waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Logf writes a progress line to stderr.
func Logf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// Driver emits the JSON lines.
type Driver struct {
	Client    string
	Version   string
	Bootstrap string
	flows     []string
	mu        sync.Mutex
	reported  map[string]bool
	current   string
	started   time.Time
	watchdog  *time.Timer
}

// New parses --bootstrap and starts the whole-run watchdog. flows: the flow names this driver
// will report (all reported as fail by the watchdog if the run overruns).
func New(client, version string, flows []string, budget time.Duration) *Driver {
	bootstrap := flag.String("bootstrap", "", "HOST:PORT of the broker")
	flag.Parse()
	if *bootstrap == "" {
		fmt.Fprintln(os.Stderr, "usage: --bootstrap HOST:PORT")
		os.Exit(2)
	}
	d := &Driver{Client: client, Version: version, Bootstrap: *bootstrap, flows: flows,
		reported: map[string]bool{}, started: time.Now()}
	d.watchdog = time.AfterFunc(budget, d.abortAll)
	Logf("%s %s against %s", client, version, d.Bootstrap)
	return d
}

// Emit prints one flow's line (once per flow).
func (d *Driver) Emit(flow, result, detail string) {
	if !selected(flow) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reported[flow] {
		return
	}
	d.reported[flow] = true
	detail = strings.Join(strings.Fields(detail), " ")
	if len(detail) > 700 {
		detail = detail[:700] + "..."
	}
	// Key order as in the contract.
	line := []byte(fmt.Sprintf(`{"client": %s, "version": %s, "flow": %s, "result": %s, "detail": %s}`,
		js(d.Client), js(d.Version), js(flow), js(result), js(detail)))
	os.Stdout.Write(append(line, '\n'))
	Logf("[%.1fs] %s: %s %s", time.Since(d.started).Seconds(), flow, result, detail)
}

func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (d *Driver) abortAll() {
	d.mu.Lock()
	cur := d.current
	d.mu.Unlock()
	pending := append([]string{cur}, d.flows...)
	for _, f := range pending {
		if f != "" {
			d.Emit(f, "fail", "driver watchdog: the whole run exceeded its time budget before this flow finished")
		}
	}
	os.Exit(1)
}

type ret struct {
	err   error
	panic interface{}
}

func (d *Driver) start(name string, limit time.Duration) (*Flow, context.CancelFunc) {
	d.mu.Lock()
	d.current = name
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	dl, _ := ctx.Deadline()
	return &Flow{Name: name, Ctx: ctx, Deadline: dl, began: time.Now(), stage: "start"}, cancel
}

func runBounded(f *Flow, fn func(*Flow) error, limit time.Duration) (done bool, r ret) {
	ch := make(chan ret, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				ch <- ret{panic: p}
			}
		}()
		ch <- ret{err: fn(f)}
	}()
	select {
	case r = <-ch:
		return true, r
	case <-time.After(limit):
		return false, ret{}
	}
}

func (d *Driver) cleanups(f *Flow) {
	f.mu.Lock()
	cs := append([]func(){}, f.cleanups...)
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer func() { recover(); close(done) }()
		for i := len(cs) - 1; i >= 0; i-- {
			c := cs[i]
			ok := make(chan struct{})
			go func() { defer func() { recover(); close(ok) }(); c() }()
			select {
			case <-ok:
			case <-time.After(5 * time.Second):
				Logf("  %s: a cleanup hung for 5 s (abandoned)", f.Name)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// selected: COMPAT_ONLY (comma-separated flow names or prefixes), for working on one flow.
func selected(flow string) bool {
	only := os.Getenv("COMPAT_ONLY")
	if only == "" {
		return true
	}
	for _, o := range strings.Split(only, ",") {
		if o != "" && strings.HasPrefix(flow, o) {
			return true
		}
	}
	return false
}

// Run runs one flow under its deadline: fn returns nil (pass), an *Outcome, or an error (fail).
func (d *Driver) Run(name string, limit time.Duration, fn func(*Flow) error) {
	if !selected(name) {
		return
	}
	Logf("%s: begin", name)
	f, cancel := d.start(name, limit)
	defer cancel()
	done, r := runBounded(f, fn, limit+time.Second)
	stage, _ := f.state()
	var result, detail string
	var o *Outcome
	switch {
	case !done:
		result, detail = "fail", fmt.Sprintf("timed out after %v at stage %q", limit, stage)
	case r.panic != nil:
		result, detail = "fail", fmt.Sprintf("at stage %q: panic: %v", stage, r.panic)
	case r.err == nil:
		result, detail = "pass", strings.Join(f.notes, "; ")
	case errors.As(r.err, &o):
		result, detail = o.Result, o.Detail
	case errors.Is(r.err, context.DeadlineExceeded) || f.Ctx.Err() != nil:
		result, detail = "fail", fmt.Sprintf("timed out after %v at stage %q (%v)", limit, stage, r.err)
	default:
		result, detail = "fail", fmt.Sprintf("at stage %q: %v", stage, r.err)
	}
	if done {
		d.cleanups(f)
	} else {
		Logf("  %s: flow goroutine abandoned (hung); its cleanups are skipped", name)
	}
	Logf("%s took %.1f s", name, time.Since(f.began).Seconds())
	d.Emit(name, result, detail)
}

// Unsupported runs one `unsupported:<call>` line: xfail when the client gets an error within
// limit, pass when the call works, fail when it hangs.
func (d *Driver) Unsupported(call, api string, fn func(*Flow) error) {
	const limit = 15 * time.Second
	name := "unsupported:" + call
	if !selected(name) {
		return
	}
	f, cancel := d.start(name, limit)
	defer cancel()
	f.Name = "unsupported-" + strings.ReplaceAll(call, "_", "-")
	began := time.Now()
	done, r := runBounded(f, fn, limit)
	secs := time.Since(began).Seconds()
	stage, inCall := f.state()
	var result, detail string
	var o *Outcome
	switch {
	case !done && !inCall:
		result, detail = "fail", fmt.Sprintf("setup for %s hung for %v at stage %q", api, limit, stage)
	case !done:
		result, detail = "fail", fmt.Sprintf("%s: no answer within %v (hangs) at stage %q", api, limit, stage)
	case r.panic != nil:
		result, detail = "fail", fmt.Sprintf("at stage %q: panic: %v", stage, r.panic)
	case r.err == nil:
		result, detail = "pass", api+" worked"
		if len(f.notes) > 0 {
			detail += ": " + strings.Join(f.notes, "; ")
		}
	case errors.As(r.err, &o):
		result, detail = o.Result, o.Detail
	case !inCall:
		result, detail = "fail", fmt.Sprintf("setup for %s failed at stage %q: %v", api, stage, r.err)
	case secs >= limit.Seconds()-0.5 || errors.Is(r.err, context.DeadlineExceeded):
		result, detail = "fail", fmt.Sprintf("%s: no answer within %v (hangs) at stage %q: %v", api, limit, stage, r.err)
	default:
		result, detail = "xfail", fmt.Sprintf("%s not served by gregor; client error after %.1f s at stage %q: %v", api, secs, stage, r.err)
	}
	if done {
		d.cleanups(f)
	}
	d.Emit(name, result, detail)
}

// Finish ends the run (abandoned goroutines may still hang in client calls).
func (d *Driver) Finish() {
	d.watchdog.Stop()
	Logf("driver done in %.1f s", time.Since(d.started).Seconds())
	os.Exit(0)
}
