// Package gatewaytest starts the real gateway binary for the integration
// tests of the Go client: a temporary bootstrap and config (file store),
// the data plane and the admin listener on free loopback ports.
//
// The binary is $GATEWAY_BIN, or else debug/gateway under $CARGO_TARGET_DIR
// (relative to the repository root when relative), or else
// <repo>/target/debug/gateway. `make test-go` builds it first.
package gatewaytest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The API keys of every gateway started here (Bootstrap.admin.api_keys).
const (
	EditorKey = "editor-key-0123456789abcdef"
	ViewerKey = "viewer-key-0123456789abcdef"
)

// Options of Start.
type Options struct {
	// The initial config YAML (the file store's file). Default: empty.
	Config string
	// More YAML of the bootstrap's admin block, indented by 2 spaces, after
	// its address and API keys (for example "  cors_allowed_origins: [...]\n").
	AdminExtra string
	// How long to wait for both listeners. Default 30s.
	StartTimeout time.Duration
}

// Gateway is one running gateway process.
type Gateway struct {
	// Dir holds gateway.yaml, config.yaml and gateway.log.
	Dir string
	// ConfigPath is the file store's file.
	ConfigPath string
	// HTTPAddr is the data plane listener, 127.0.0.1:<port>.
	HTTPAddr string
	// AdminAddr is the admin listener (gRPC, grpc-web), 127.0.0.1:<port>.
	AdminAddr string

	bin     string
	timeout time.Duration
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
	stop    sync.Once
}

// RepoRoot is the repository root: the first parent of the working
// directory that holds Cargo.toml and proto/.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isFile(filepath.Join(dir, "Cargo.toml")) && isDir(filepath.Join(dir, "proto")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("gatewaytest: no repository root (Cargo.toml and proto/) above the working directory")
		}
		dir = parent
	}
}

// Binary is the path of the gateway binary to run (see the package doc).
func Binary() (string, error) {
	if bin := os.Getenv("GATEWAY_BIN"); bin != "" {
		if !isFile(bin) {
			return "", fmt.Errorf("gatewaytest: GATEWAY_BIN=%s: no such file", bin)
		}
		return filepath.Abs(bin)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	target := os.Getenv("CARGO_TARGET_DIR")
	switch {
	case target == "":
		target = filepath.Join(root, "target")
	case !filepath.IsAbs(target):
		target = filepath.Join(root, target)
	}
	bin := filepath.Join(target, "debug", "gateway")
	if !isFile(bin) {
		return "", fmt.Errorf("gatewaytest: %s: no such file: build it with `cargo build -p pingora-config-gateway --bin gateway` (make test-go does), or set GATEWAY_BIN", bin)
	}
	return bin, nil
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start runs the gateway and returns once both of its listeners accept
// connections. Call Stop when done.
func Start(opts Options) (*Gateway, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pingora-config-gateway-")
	if err != nil {
		return nil, err
	}
	g := &Gateway{Dir: dir, ConfigPath: filepath.Join(dir, "config.yaml"), logPath: filepath.Join(dir, "gateway.log")}
	fail := func(err error) (*Gateway, error) {
		g.Stop()
		return nil, err
	}
	httpPort, err := FreePort()
	if err != nil {
		return fail(err)
	}
	adminPort, err := FreePort()
	if err != nil {
		return fail(err)
	}
	g.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", httpPort)
	g.AdminAddr = fmt.Sprintf("127.0.0.1:%d", adminPort)
	if err := os.WriteFile(g.ConfigPath, []byte(opts.Config), 0o600); err != nil {
		return fail(err)
	}
	bootstrap := fmt.Sprintf(`threads: 2
listeners:
  - { name: http, address: %q }
store:
  file: { path: %q, watch_debounce: 0.05s }
shutdown: { graceful_timeout: 1s }
admin:
  address: %q
  api_keys:
    - { name: editor, key: %s, role: EDITOR }
    - { name: viewer, key: %s, role: VIEWER }
%s`, g.HTTPAddr, g.ConfigPath, g.AdminAddr, EditorKey, ViewerKey, opts.AdminExtra)
	if err := os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte(bootstrap), 0o600); err != nil {
		return fail(err)
	}
	g.bin, g.timeout = bin, opts.StartTimeout
	if g.timeout == 0 {
		g.timeout = 30 * time.Second
	}
	if err := g.spawn(); err != nil {
		return fail(err)
	}
	return g, nil
}

// spawn runs the gateway on g.Dir and waits for both listeners.
func (g *Gateway) spawn() error {
	log, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(g.bin, "run",
		"--bootstrap", filepath.Join(g.Dir, "gateway.yaml"),
		"--pid-file", filepath.Join(g.Dir, "gateway.pid"),
		"--upgrade-sock", filepath.Join(g.Dir, "upgrade.sock"))
	cmd.Dir = g.Dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "RUST_LOG=info")
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("gatewaytest: start %s: %w", g.bin, err)
	}
	exited := make(chan struct{})
	g.cmd, g.exited = cmd, exited
	go func() {
		g.waitErr = cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(g.timeout)
	for _, addr := range []string{g.AdminAddr, g.HTTPAddr} {
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-exited:
				return fmt.Errorf("gatewaytest: the gateway exited (%v) before listening on %s:\n%s", g.waitErr, addr, g.Log())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("gatewaytest: the gateway did not listen on %s within %s:\n%s", addr, g.timeout, g.Log())
			}
		}
	}
	return nil
}

// Restart kills the gateway (as a crash would) and starts it again on the
// same directory, files and ports.
func (g *Gateway) Restart() error {
	g.kill()
	return g.spawn()
}

func (g *Gateway) kill() {
	if g.cmd != nil && g.cmd.Process != nil {
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
}

// StartT is Start for one test: it fails the test when the gateway does not
// start, stops the gateway at the test's cleanup (whether it passed or not)
// and then, if the test failed, logs the gateway's log.
func StartT(t testing.TB, opts Options) *Gateway {
	t.Helper()
	g, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.Log())
		}
		g.Stop()
	})
	return g
}

// Log is what the gateway wrote to stdout and stderr so far.
func (g *Gateway) Log() string {
	b, _ := os.ReadFile(g.logPath)
	return string(b)
}

// LogTail is the last n lines of Log.
func (g *Gateway) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(g.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop kills the gateway (SIGKILL: nothing of its state matters after a
// test), waits for it and removes its directory. Safe to call twice.
func (g *Gateway) Stop() {
	g.stop.Do(func() {
		g.kill()
		_ = os.RemoveAll(g.Dir)
	})
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
