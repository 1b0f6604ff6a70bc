package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-config/pingora-config/clients/go/internal/gatewaytest"
	"github.com/pingora-config/pingora-config/clients/go/pingoraconfig"
	pc "github.com/pingora-config/pingora-config/clients/go/pingoraconfig/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitLog(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", want, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// start runs the example until the returned stop is called.
func start(t *testing.T, c *pingoraconfig.Client, state string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, state) }()
	return func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("run: %v", err)
		}
	}
}

func TestReactsToRouteChangesAndHealthAndResumesAfterARestart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no gateway")
	}
	gw := gatewaytest.StartT(t, gatewaytest.Options{})
	out := &syncBuffer{}
	log.SetOutput(out)
	t.Cleanup(func() { log.SetOutput(nil) })

	ctx := context.Background()
	c, err := pingoraconfig.Dial(ctx, gw.AdminAddr, pingoraconfig.WithInsecure(), pingoraconfig.WithAPIKey(gatewaytest.EditorKey))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	state := filepath.Join(t.TempDir(), "watch.state")

	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(interface{ String() string }).String()
	port = port[strings.LastIndex(port, ":")+1:]

	stop := start(t, c, state)
	waitLog(t, out, "watching from revision")
	up := &pc.Upstream{}
	if err := protojson.Unmarshal([]byte(fmt.Sprintf(`{"id":"orders","nodes":[{"host":"127.0.0.1","port":%s}],
		"health_check":{"active":{"type":"HTTP","path":"/healthz","interval":"0.1s","timeout":"0.1s","healthy_threshold":1,"unhealthy_threshold":1}}}`, port)), up); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateUpstream(ctx, up); err != nil {
		t.Fatal(err)
	}
	route := &pc.Route{Id: "orders-api", Uris: []string{"/orders/*"}, Target: &pc.Route_UpstreamId{UpstreamId: "orders"}}
	created, err := c.CreateRoute(ctx, route)
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, out, "route orders-api created: /orders/* -> upstream orders")
	time.Sleep(800 * time.Millisecond) // the first probes pass
	healthy.Store(false)
	waitLog(t, out, "upstream orders node 127.0.0.1:"+port+" is UNHEALTHY")
	healthy.Store(true)
	waitLog(t, out, "upstream orders node 127.0.0.1:"+port+" is healthy")
	stop()

	// A change while it is down: it sees it when it comes back, and only it.
	route.Uris = []string{"/orders/*", "/v2/orders/*"}
	if _, err := c.UpdateRoute(ctx, route, created.GetMeta().GetRevision()); err != nil {
		t.Fatal(err)
	}
	stop = start(t, c, state)
	waitLog(t, out, "route orders-api updated: /orders/*,/v2/orders/* -> upstream orders")
	stop()
	if n := strings.Count(out.String(), "route orders-api created"); n != 1 {
		t.Fatalf("the creation handled %d times:\n%s", n, out.String())
	}
}
