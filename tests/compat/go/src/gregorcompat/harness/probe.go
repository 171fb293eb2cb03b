package harness

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Range is the versions a broker advertises for one API.
type Range struct{ Min, Max int16 }

// ProbeAPIVersions sends a raw ApiVersions v0 request: the broker's advertised version ranges,
// used only to explain a failure (a client with fixed old request versions meeting a broker that
// no longer serves them), never to change what the client under test does.
func ProbeAPIVersions(bootstrap string) (map[int16]Range, error) {
	c, err := net.DialTimeout("tcp", bootstrap, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var body bytes.Buffer
	binary.Write(&body, binary.BigEndian, int16(18)) // ApiVersions
	binary.Write(&body, binary.BigEndian, int16(0))  // v0
	binary.Write(&body, binary.BigEndian, int32(1))  // correlation id
	binary.Write(&body, binary.BigEndian, int16(len("probe")))
	body.WriteString("probe")
	var frame bytes.Buffer
	binary.Write(&frame, binary.BigEndian, int32(body.Len()))
	frame.Write(body.Bytes())
	if _, err := c.Write(frame.Bytes()); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	var size, corr int32
	var code int16
	var n int32
	for _, v := range []interface{}{&size, &corr, &code, &n} {
		if err := binary.Read(r, binary.BigEndian, v); err != nil {
			return nil, err
		}
	}
	if code != 0 {
		return nil, fmt.Errorf("ApiVersions v0 error code %d", code)
	}
	out := map[int16]Range{}
	for i := int32(0); i < n; i++ {
		var k, lo, hi int16
		for _, v := range []interface{}{&k, &lo, &hi} {
			if err := binary.Read(r, binary.BigEndian, v); err != nil {
				return nil, err
			}
		}
		out[k] = Range{lo, hi}
	}
	return out, nil
}

// GregorBin is the gregor CLI (GREGOR_BIN, else target/release/gregor above this program or
// the working directory), used for setup steps the client under test cannot do.
func GregorBin() string {
	if b := os.Getenv("GREGOR_BIN"); b != "" {
		return b
	}
	var starts []string
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, d := range starts {
		for i := 0; i < 8; i++ {
			p := filepath.Join(d, "target", "release", "gregor")
			if _, err := os.Stat(p); err == nil {
				return p
			}
			d = filepath.Dir(d)
		}
	}
	return "gregor"
}

// Gregor runs the gregor CLI with stdin, bounded by limit.
func Gregor(limit time.Duration, stdin string, args ...string) (string, error) {
	cmd := exec.Command(GregorBin(), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), fmt.Errorf("gregor %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
		}
		return out.String(), nil
	case <-time.After(limit):
		cmd.Process.Kill()
		return "", fmt.Errorf("gregor %s: no exit within %v", strings.Join(args, " "), limit)
	}
}

// LineCapture is an io.Writer that keeps complete lines (for a client's logger).
type LineCapture struct {
	mu    chanMutex
	buf   []byte
	lines []string
	echo  io.Writer
}

type chanMutex chan struct{}

func (m chanMutex) lock()   { m <- struct{}{} }
func (m chanMutex) unlock() { <-m }

// NewLineCapture copies to echo (may be nil) as well.
func NewLineCapture(echo io.Writer) *LineCapture {
	return &LineCapture{mu: make(chanMutex, 1), echo: echo}
}

func (l *LineCapture) Write(p []byte) (int, error) {
	l.mu.lock()
	defer l.mu.unlock()
	if l.echo != nil {
		l.echo.Write(p)
	}
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// Lines returns a copy of the complete lines so far.
func (l *LineCapture) Lines() []string {
	l.mu.lock()
	defer l.mu.unlock()
	return append([]string{}, l.lines...)
}
