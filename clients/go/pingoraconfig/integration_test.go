// The facade against the real gateway: one gateway process for the whole
// package (started in TestMain, killed at the end), each test with its own
// resource ids. `make test-go` builds the binary first; see
// internal/gatewaytest for where it is looked for. With -short, these tests
// are skipped.
package pingoraconfig_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-config/pingora-config/clients/go/internal/gatewaytest"
	"github.com/pingora-config/pingora-config/clients/go/pingoraconfig"
	pc "github.com/pingora-config/pingora-config/clients/go/pingoraconfig/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// gw is the gateway every test of this package talks to; nil with -short.
var gw *gatewaytest.Gateway

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	g, err := gatewaytest.Start(gatewaytest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gw = g
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "gateway log (last 60 lines):\n%s\n", g.LogTail(60))
	}
	g.Stop()
	os.Exit(code)
}

// dial returns a client of the package's gateway with key, closed at the
// end of the test.
func dial(t *testing.T, key string) *pingoraconfig.Client {
	t.Helper()
	if gw == nil {
		t.Skip("-short: no gateway")
	}
	c, err := pingoraconfig.Dial(context.Background(), gw.AdminAddr, pingoraconfig.WithInsecure(), pingoraconfig.WithAPIKey(key))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var seq atomic.Int64

// uid is an id no other test of this run uses.
func uid(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, seq.Add(1))
}

// fromJSON decodes a resource from proto-JSON, the way the YAML config
// writes it.
func fromJSON[T any, P interface {
	*T
	proto.Message
}](t *testing.T, js string) P {
	t.Helper()
	m := P(new(T))
	if err := protojson.Unmarshal([]byte(js), m); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return m
}

func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want %v", what, err, code)
	}
}

// origin is a real upstream: it answers every request with its name.
func origin(t *testing.T, name string) (host string, port int) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-upstream", name)
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	var p int
	if _, err := fmt.Sscanf(addr[strings.LastIndex(addr, ":")+1:], "%d", &p); err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1", p
}

func upstreamJSON(id string, port int) string {
	return fmt.Sprintf(`{"id":%q,"nodes":[{"host":"127.0.0.1","port":%d}]}`, id, port)
}

// selfSigned is a certificate for names and its key, PEM.
func selfSigned(t *testing.T, names ...string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}))
}

// kindOps is create/get/list/update/delete of one resource kind, each
// returning the resource's revision (the store's for a delete).
type kindOps struct {
	create func() (int64, error)
	get    func() (labels map[string]string, rev int64, err error)
	list   func() ([]string, error)
	update func(rev int64) (int64, error)
	del    func(rev int64) (int64, error)
}

// exercise runs the life cycle every kind shares: create (twice:
// ALREADY_EXISTS), get, list, update (labels), a stale update and a stale
// delete (ABORTED), delete, get (NOT_FOUND).
func exercise(t *testing.T, ctx context.Context, id string, ops kindOps) {
	t.Helper()
	created, err := ops.create()
	if err != nil || created <= 0 {
		t.Fatalf("create: %d %v", created, err)
	}
	_, err = ops.create()
	wantCode(t, err, codes.AlreadyExists, "create again")
	if _, rev, err := ops.get(); err != nil || rev != created {
		t.Fatalf("get: revision %d (want %d), %v", rev, created, err)
	}
	ids, err := ops.list()
	if err != nil || !slices.Contains(ids, id) {
		t.Fatalf("list: %v %v, want %s in it", ids, err, id)
	}
	updated, err := ops.update(created)
	if err != nil || updated <= created {
		t.Fatalf("update: %d %v (created at %d)", updated, err, created)
	}
	labels, rev, err := ops.get()
	if err != nil || rev != updated || labels["stage"] != "updated" {
		t.Fatalf("get after update: %v at %d (want %d), %v", labels, rev, updated, err)
	}
	_, err = ops.update(created)
	wantCode(t, err, codes.Aborted, "stale update")
	if !pingoraconfig.IsConflict(err) {
		t.Fatalf("IsConflict(%v) = false", err)
	}
	_, err = ops.del(created)
	wantCode(t, err, codes.Aborted, "stale delete")
	deleted, err := ops.del(updated)
	if err != nil || deleted <= updated {
		t.Fatalf("delete: %d %v", deleted, err)
	}
	_, _, err = ops.get()
	wantCode(t, err, codes.NotFound, "get after delete")
	_ = ctx
}

func labelled[T any, P interface {
	*T
	proto.Message
}](t *testing.T, m P, set func(P, map[string]string)) P {
	out := proto.Clone(m).(P)
	set(out, map[string]string{"stage": "updated"})
	return out
}

func TestCRUDOfEveryKind(t *testing.T) {
	c := dial(t, gatewaytest.EditorKey)
	ctx := testContext(t)
	_, port := origin(t, "crud")

	t.Run("upstream", func(t *testing.T) {
		id := uid("up")
		u := fromJSON[pc.Upstream](t, upstreamJSON(id, port))
		exercise(t, ctx, id, kindOps{
			create: func() (int64, error) { e, err := c.CreateUpstream(ctx, u); return e.GetMeta().GetRevision(), err },
			get: func() (map[string]string, int64, error) {
				e, err := c.GetUpstream(ctx, id)
				return e.GetUpstream().GetLabels(), e.GetMeta().GetRevision(), err
			},
			list: func() ([]string, error) {
				items, _, err := c.ListAllUpstreams(ctx, nil)
				var ids []string
				for _, e := range items {
					ids = append(ids, e.GetUpstream().GetId())
				}
				return ids, err
			},
			update: func(rev int64) (int64, error) {
				e, err := c.UpdateUpstream(ctx, labelled(t, u, func(m *pc.Upstream, l map[string]string) { m.Labels = l }), rev)
				return e.GetMeta().GetRevision(), err
			},
			del: func(rev int64) (int64, error) { r, err := c.DeleteUpstream(ctx, id, rev); return r.GetRevision(), err },
		})
	})

	t.Run("route", func(t *testing.T) {
		up := uid("up")
		if _, err := c.CreateUpstream(ctx, fromJSON[pc.Upstream](t, upstreamJSON(up, port))); err != nil {
			t.Fatal(err)
		}
		id := uid("route")
		r := fromJSON[pc.Route](t, fmt.Sprintf(`{"id":%q,"uris":["/%s"],"upstream_id":%q}`, id, id, up))
		exercise(t, ctx, id, kindOps{
			create: func() (int64, error) { e, err := c.CreateRoute(ctx, r); return e.GetMeta().GetRevision(), err },
			get: func() (map[string]string, int64, error) {
				e, err := c.GetRoute(ctx, id)
				return e.GetRoute().GetLabels(), e.GetMeta().GetRevision(), err
			},
			list: func() ([]string, error) {
				items, _, err := c.ListAllRoutes(ctx, nil)
				var ids []string
				for _, e := range items {
					ids = append(ids, e.GetRoute().GetId())
				}
				return ids, err
			},
			update: func(rev int64) (int64, error) {
				e, err := c.UpdateRoute(ctx, labelled(t, r, func(m *pc.Route, l map[string]string) { m.Labels = l }), rev)
				return e.GetMeta().GetRevision(), err
			},
			del: func(rev int64) (int64, error) { r, err := c.DeleteRoute(ctx, id, rev); return r.GetRevision(), err },
		})
	})

	t.Run("service", func(t *testing.T) {
		up := uid("up")
		if _, err := c.CreateUpstream(ctx, fromJSON[pc.Upstream](t, upstreamJSON(up, port))); err != nil {
			t.Fatal(err)
		}
		id := uid("svc")
		s := fromJSON[pc.Service](t, fmt.Sprintf(`{"id":%q,"upstream_id":%q}`, id, up))
		exercise(t, ctx, id, kindOps{
			create: func() (int64, error) { e, err := c.CreateService(ctx, s); return e.GetMeta().GetRevision(), err },
			get: func() (map[string]string, int64, error) {
				e, err := c.GetService(ctx, id)
				return e.GetService().GetLabels(), e.GetMeta().GetRevision(), err
			},
			list: func() ([]string, error) {
				items, _, err := c.ListAllServices(ctx, nil)
				var ids []string
				for _, e := range items {
					ids = append(ids, e.GetService().GetId())
				}
				return ids, err
			},
			update: func(rev int64) (int64, error) {
				e, err := c.UpdateService(ctx, labelled(t, s, func(m *pc.Service, l map[string]string) { m.Labels = l }), rev)
				return e.GetMeta().GetRevision(), err
			},
			del: func(rev int64) (int64, error) { r, err := c.DeleteService(ctx, id, rev); return r.GetRevision(), err },
		})
	})

	t.Run("consumer", func(t *testing.T) {
		id := uid("user")
		u := fromJSON[pc.Consumer](t, fmt.Sprintf(`{"username":%q,"credentials":{"key_auth":{"key":"%s-secret-key"}}}`, id, id))
		exercise(t, ctx, id, kindOps{
			create: func() (int64, error) {
				e, err := c.CreateConsumer(ctx, u)
				if err == nil && e.GetConsumer().GetCredentials().GetKeyAuth().GetKey() != "<redacted>" {
					t.Errorf("the key comes back: %v", e.GetConsumer())
				}
				return e.GetMeta().GetRevision(), err
			},
			get: func() (map[string]string, int64, error) {
				e, err := c.GetConsumer(ctx, id)
				return e.GetConsumer().GetLabels(), e.GetMeta().GetRevision(), err
			},
			list: func() ([]string, error) {
				items, _, err := c.ListAllConsumers(ctx, nil)
				var ids []string
				for _, e := range items {
					ids = append(ids, e.GetConsumer().GetUsername())
				}
				return ids, err
			},
			update: func(rev int64) (int64, error) {
				e, err := c.UpdateConsumer(ctx, labelled(t, u, func(m *pc.Consumer, l map[string]string) { m.Labels = l }), rev)
				return e.GetMeta().GetRevision(), err
			},
			del: func(rev int64) (int64, error) { r, err := c.DeleteConsumer(ctx, id, rev); return r.GetRevision(), err },
		})
	})

	t.Run("ssl", func(t *testing.T) {
		id := uid("ssl")
		host := id + ".example.com"
		cert, key := selfSigned(t, host)
		s := &pc.Ssl{Id: id, Cert: cert, Key: key, Snis: []string{host}}
		var redacted *pc.Ssl
		exercise(t, ctx, id, kindOps{
			create: func() (int64, error) {
				e, err := c.CreateSsl(ctx, s)
				if err == nil && e.GetSsl().GetKey() != "<redacted>" {
					t.Errorf("the private key comes back: %q", e.GetSsl().GetKey())
				}
				if err == nil {
					redacted = e.GetSsl()
				}
				return e.GetMeta().GetRevision(), err
			},
			get: func() (map[string]string, int64, error) {
				e, err := c.GetSsl(ctx, id)
				return e.GetSsl().GetLabels(), e.GetMeta().GetRevision(), err
			},
			list: func() ([]string, error) {
				items, _, err := c.ListAllSsls(ctx, nil)
				var ids []string
				for _, e := range items {
					ids = append(ids, e.GetSsl().GetId())
				}
				return ids, err
			},
			// What was read back, key redacted: the stored key is kept.
			update: func(rev int64) (int64, error) {
				e, err := c.UpdateSsl(ctx, labelled(t, redacted, func(m *pc.Ssl, l map[string]string) { m.Labels = l }), rev)
				return e.GetMeta().GetRevision(), err
			},
			del: func(rev int64) (int64, error) { r, err := c.DeleteSsl(ctx, id, rev); return r.GetRevision(), err },
		})
	})

	t.Run("global rule", func(t *testing.T) {
		id := uid("rule")
		g := fromJSON[pc.GlobalRule](t, fmt.Sprintf(`{"id":%q,"plugins":{"request_id":{"header_name":"x-%s"}}}`, id, id))
		exercise(t, ctx, id, kindOps{
			create: func() (int64, error) { e, err := c.CreateGlobalRule(ctx, g); return e.GetMeta().GetRevision(), err },
			// A global rule has no labels: the update marks its plugin.
			get: func() (map[string]string, int64, error) {
				e, err := c.GetGlobalRule(ctx, id)
				stage := strings.TrimPrefix(e.GetGlobalRule().GetPlugins().GetRequestId().GetHeaderName(), "x-")
				return map[string]string{"stage": stage}, e.GetMeta().GetRevision(), err
			},
			list: func() ([]string, error) {
				items, _, err := c.ListAllGlobalRules(ctx, nil)
				var ids []string
				for _, e := range items {
					ids = append(ids, e.GetGlobalRule().GetId())
				}
				return ids, err
			},
			update: func(rev int64) (int64, error) {
				e, err := c.UpdateGlobalRule(ctx, labelled(t, g, func(m *pc.GlobalRule, l map[string]string) { m.Plugins.RequestId.HeaderName = "x-" + l["stage"] }), rev)
				return e.GetMeta().GetRevision(), err
			},
			del: func(rev int64) (int64, error) {
				r, err := c.DeleteGlobalRule(ctx, id, rev)
				return r.GetRevision(), err
			},
		})
	})

	t.Run("plugin config", func(t *testing.T) {
		id := uid("pc")
		p := fromJSON[pc.PluginConfig](t, fmt.Sprintf(`{"id":%q,"plugins":{"mock":{"body":"%s"}}}`, id, id))
		exercise(t, ctx, id, kindOps{
			create: func() (int64, error) { e, err := c.CreatePluginConfig(ctx, p); return e.GetMeta().GetRevision(), err },
			get: func() (map[string]string, int64, error) {
				e, err := c.GetPluginConfig(ctx, id)
				return e.GetPluginConfig().GetLabels(), e.GetMeta().GetRevision(), err
			},
			list: func() ([]string, error) {
				items, _, err := c.ListAllPluginConfigs(ctx, nil)
				var ids []string
				for _, e := range items {
					ids = append(ids, e.GetPluginConfig().GetId())
				}
				return ids, err
			},
			update: func(rev int64) (int64, error) {
				e, err := c.UpdatePluginConfig(ctx, labelled(t, p, func(m *pc.PluginConfig, l map[string]string) { m.Labels = l }), rev)
				return e.GetMeta().GetRevision(), err
			},
			del: func(rev int64) (int64, error) {
				r, err := c.DeletePluginConfig(ctx, id, rev)
				return r.GetRevision(), err
			},
		})
	})
}

// get fetches http://<data plane><path> until it answers want (the write
// is applied asynchronously to the data plane only with the etcd store; the
// file store serves it at once, but a retry costs nothing).
func get(t *testing.T, path string, want int) (string, http.Header) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + gw.HTTPAddr + path)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return string(body), resp.Header
			}
			err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: want %d: %v", path, want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDataPlaneServesARouteCreatedThroughTheAPI(t *testing.T) {
	c := dial(t, gatewaytest.EditorKey)
	ctx := testContext(t)
	_, port := origin(t, "orders")
	up, route := uid("orders"), uid("orders-api")
	path := "/" + route + "/items"
	get(t, path, http.StatusNotFound)
	if _, err := c.CreateUpstream(ctx, fromJSON[pc.Upstream](t, upstreamJSON(up, port))); err != nil {
		t.Fatal(err)
	}
	e, err := c.CreateRoute(ctx, fromJSON[pc.Route](t, fmt.Sprintf(`{"id":%q,"uris":["/%s/*"],"upstream_id":%q}`, route, route, up)))
	if err != nil {
		t.Fatal(err)
	}
	body, header := get(t, path, http.StatusOK)
	if body != "orders "+path || header.Get("x-upstream") != "orders" {
		t.Fatalf("through the gateway: %q %v", body, header)
	}
	if _, err := c.DeleteRoute(ctx, route, e.GetMeta().GetRevision()); err != nil {
		t.Fatal(err)
	}
	get(t, path, http.StatusNotFound)
}

func TestApplyDryRunShowsTheDiffThenApplies(t *testing.T) {
	c := dial(t, gatewaytest.EditorKey)
	ctx := testContext(t)
	_, port := origin(t, "apply")
	exported, err := c.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Secrets come back redacted: Apply keeps the stored value for them.
	cfg := exported.GetConfig()
	up, route := uid("applied"), uid("applied-route")
	cfg.Upstreams = append(cfg.Upstreams, fromJSON[pc.Upstream](t, upstreamJSON(up, port)))
	cfg.Routes = append(cfg.Routes, fromJSON[pc.Route](t, fmt.Sprintf(`{"id":%q,"uris":["/%s"],"upstream_id":%q}`, route, route, up)))

	dry, err := c.Apply(ctx, cfg, exported.GetRevision(), true)
	if err != nil {
		t.Fatal(err)
	}
	if dry.GetRevision() != exported.GetRevision() {
		t.Fatalf("dry run revision %d, want %d", dry.GetRevision(), exported.GetRevision())
	}
	var got []string
	for _, ch := range dry.GetDiff().GetChanges() {
		got = append(got, fmt.Sprintf("%s %s %s", ch.GetKind(), ch.GetId(), ch.GetType()))
	}
	want := []string{"ROUTE " + route + " ADDED", "UPSTREAM " + up + " ADDED"}
	if !slices.Equal(got, want) {
		t.Fatalf("dry run diff %v, want %v", got, want)
	}
	get(t, "/"+route, http.StatusNotFound) // the dry run wrote nothing

	// The same apply against a stale revision: ABORTED.
	_, err = c.Apply(ctx, cfg, exported.GetRevision()-1, false)
	wantCode(t, err, codes.Aborted, "stale apply")
	if !pingoraconfig.IsConflict(err) {
		t.Fatal("IsConflict is false for a stale apply")
	}

	applied, err := c.Apply(ctx, cfg, exported.GetRevision(), false)
	if err != nil {
		t.Fatal(err)
	}
	if applied.GetRevision() != exported.GetRevision()+1 || len(applied.GetDiff().GetChanges()) != 2 {
		t.Fatalf("apply: revision %d (from %d), diff %v", applied.GetRevision(), exported.GetRevision(), applied.GetDiff())
	}
	get(t, "/"+route, http.StatusOK)
	st, err := c.Status(ctx)
	if err != nil || st.GetAppliedRevision() < applied.GetRevision() {
		t.Fatalf("status: %v %v", st, err)
	}
	// Applying the same config again writes nothing.
	again, err := c.Apply(ctx, cfg, 0, false)
	if err != nil || len(again.GetDiff().GetChanges()) != 0 || again.GetRevision() != applied.GetRevision() {
		t.Fatalf("apply again: %v %v", again, err)
	}
}

func TestConcurrentEditorsConflict(t *testing.T) {
	alice, bob := dial(t, gatewaytest.EditorKey), dial(t, gatewaytest.EditorKey)
	ctx := testContext(t)
	_, port := origin(t, "conflict")
	id := uid("contended")
	e, err := alice.CreateUpstream(ctx, fromJSON[pc.Upstream](t, upstreamJSON(id, port)))
	if err != nil {
		t.Fatal(err)
	}
	read := e.GetMeta().GetRevision()
	// Both read revision `read`; bob writes first.
	bobs := fromJSON[pc.Upstream](t, upstreamJSON(id, port))
	bobs.Description = "bob"
	if _, err := bob.UpdateUpstream(ctx, bobs, read); err != nil {
		t.Fatal(err)
	}
	alices := fromJSON[pc.Upstream](t, upstreamJSON(id, port))
	alices.Description = "alice"
	_, err = alice.UpdateUpstream(ctx, alices, read)
	if !pingoraconfig.IsConflict(err) || status.Code(err) != codes.Aborted {
		t.Fatalf("alice's stale update: %v, want ABORTED", err)
	}
	// Read again, retry: it goes through, on top of bob's.
	cur, err := alice.GetUpstream(ctx, id)
	if err != nil || cur.GetUpstream().GetDescription() != "bob" {
		t.Fatalf("read again: %v %v", cur, err)
	}
	if _, err := alice.UpdateUpstream(ctx, alices, cur.GetMeta().GetRevision()); err != nil {
		t.Fatal(err)
	}
	// expected_revision is required: 0 is not "no check".
	_, err = bob.UpdateUpstream(ctx, bobs, 0)
	wantCode(t, err, codes.InvalidArgument, "an update without expected_revision")
	if v := pingoraconfig.FieldViolations(err); len(v) != 1 || v[0].GetField() != "expected_revision" {
		t.Fatalf("FieldViolations: %v", v)
	}
}

func TestRejectedWritesCarryFieldViolations(t *testing.T) {
	c := dial(t, gatewaytest.EditorKey)
	ctx := testContext(t)
	_, port := origin(t, "violations")
	up := uid("up")
	if _, err := c.CreateUpstream(ctx, fromJSON[pc.Upstream](t, upstreamJSON(up, port))); err != nil {
		t.Fatal(err)
	}

	// A rule of the schema: INVALID_ARGUMENT, google.rpc.BadRequest.
	_, err := c.CreateRoute(ctx, fromJSON[pc.Route](t, fmt.Sprintf(`{"id":%q,"uris":["no-slash"],"upstream_id":%q}`, uid("bad"), up)))
	wantCode(t, err, codes.InvalidArgument, "invalid uri")
	st, _ := status.FromError(err)
	var br *errdetails.BadRequest
	for _, d := range st.Details() {
		if b, ok := d.(*errdetails.BadRequest); ok {
			br = b
		}
	}
	if br == nil || len(br.GetFieldViolations()) == 0 {
		t.Fatalf("no BadRequest in %v", st.Details())
	}
	fv := br.GetFieldViolations()[0]
	if !strings.HasPrefix(fv.GetField(), "routes[") || !strings.HasSuffix(fv.GetField(), "].uris[0]") || fv.GetDescription() == "" {
		t.Fatalf("field violation %v", fv)
	}
	if got := pingoraconfig.FieldViolations(err); len(got) != len(br.GetFieldViolations()) || got[0].GetField() != fv.GetField() {
		t.Fatalf("FieldViolations: %v, want %v", got, br.GetFieldViolations())
	}

	// A reference to nothing: FAILED_PRECONDITION, with the field too.
	_, err = c.CreateRoute(ctx, fromJSON[pc.Route](t, fmt.Sprintf(`{"id":%q,"uris":["/x"],"upstream_id":"missing"}`, uid("dangling"))))
	wantCode(t, err, codes.FailedPrecondition, "dangling reference")
	if v := pingoraconfig.FieldViolations(err); len(v) == 0 || !strings.HasSuffix(v[0].GetField(), "].upstream_id") {
		t.Fatalf("FieldViolations: %v", v)
	}
	if pingoraconfig.FieldViolations(errors.New("plain")) != nil || pingoraconfig.IsConflict(err) {
		t.Fatal("helpers on other errors")
	}

	// ValidateConfig reports violations without failing.
	v, err := c.Validate(ctx, &pc.Config{Routes: []*pc.Route{fromJSON[pc.Route](t, `{"id":"x","uris":["/x"],"upstream_id":"nothing"}`)}})
	if err != nil || v.GetValid() || len(v.GetViolations()) == 0 || v.GetViolations()[0].GetPath() != "routes[0].upstream_id" {
		t.Fatalf("validate: %v %v", v, err)
	}
}

func TestAuth(t *testing.T) {
	ctx := testContext(t)
	viewer := dial(t, gatewaytest.ViewerKey)
	if _, _, err := viewer.ListAllRoutes(ctx, nil); err != nil {
		t.Fatalf("a viewer lists: %v", err)
	}
	_, err := viewer.CreateUpstream(ctx, fromJSON[pc.Upstream](t, upstreamJSON(uid("viewer"), 80)))
	wantCode(t, err, codes.PermissionDenied, "a viewer writes")
	_, err = dial(t, "not-a-key-of-this-gateway").Export(ctx)
	wantCode(t, err, codes.Unauthenticated, "a wrong key")
}

// events collects what Watch passes on, in a goroutine, until the test ends.
type events struct {
	ch       chan *pc.Event
	finished chan struct{} // closed when Watch returned
	err      error         // what it returned
}

func watch(t *testing.T, c *pingoraconfig.Client, req *pc.WatchRequest) *events {
	ctx, cancel := context.WithCancel(context.Background())
	ev := &events{ch: make(chan *pc.Event, 1024), finished: make(chan struct{})}
	go func() {
		defer close(ev.finished)
		ev.err = c.Watch(ctx, req, func(e *pc.Event) error {
			ev.ch <- e
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-ev.finished
		if !errors.Is(ev.err, context.Canceled) {
			t.Errorf("watch ended with %v", ev.err)
		}
	})
	return ev
}

// next waits for the first event that match accepts.
func (ev *events) next(t *testing.T, what string, match func(*pc.Event) bool) *pc.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-ev.ch:
			if match(e) {
				return e
			}
		case <-ev.finished:
			t.Fatalf("watch ended (%v) before %s", ev.err, what)
		case <-timeout:
			t.Fatalf("no event: %s", what)
		}
	}
}

func TestWatchSeesAnotherClientsWriteAndResumes(t *testing.T) {
	ctx := testContext(t)
	editor, viewer := dial(t, gatewaytest.EditorKey), dial(t, gatewaytest.ViewerKey)
	_, rev, err := viewer.ListAllUpstreams(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	live := watch(t, viewer, &pc.WatchRequest{StartRevision: rev + 1, Kinds: []pc.Event_Kind{pc.Event_RESOURCE}})

	_, port := origin(t, "watched")
	id := uid("watched")
	created, err := editor.CreateUpstream(ctx, fromJSON[pc.Upstream](t, upstreamJSON(id, port)))
	if err != nil {
		t.Fatal(err)
	}
	isID := func(e *pc.Event) bool { return e.GetResource().GetId() == id }
	e := live.next(t, "the upstream's creation", isID)
	r := e.GetResource()
	if r.GetKind() != pc.Resource_UPSTREAM || r.GetType() != pc.ResourceEvent_PUT || r.GetOldValue() != nil ||
		r.GetNewValue().GetUpstream().GetId() != id || e.GetRevision() != created.GetMeta().GetRevision() {
		t.Fatalf("creation event %v", e)
	}
	if _, err := editor.DeleteUpstream(ctx, id, created.GetMeta().GetRevision()); err != nil {
		t.Fatal(err)
	}
	e = live.next(t, "the upstream's deletion", isID)
	if e.GetResource().GetType() != pc.ResourceEvent_DELETE || e.GetResource().GetOldValue().GetUpstream().GetId() != id {
		t.Fatalf("deletion event %v", e)
	}

	// A business system that saw up to `rev` resumes from rev + 1: the
	// history replays, the creation first.
	replay := watch(t, viewer, &pc.WatchRequest{StartRevision: created.GetMeta().GetRevision(), ResourceKinds: []pc.Resource_Kind{pc.Resource_UPSTREAM}})
	first := replay.next(t, "the replayed creation", func(*pc.Event) bool { return true })
	if !isID(first) || first.GetRevision() != created.GetMeta().GetRevision() {
		t.Fatalf("first replayed event %v", first)
	}
	replay.next(t, "the replayed deletion", isID)
}

func TestWatchOfAViewerWithAWrongKeyFailsAtOnce(t *testing.T) {
	ctx := testContext(t)
	c := dial(t, "not-a-key-of-this-gateway")
	err := c.Watch(ctx, &pc.WatchRequest{}, func(*pc.Event) error { return nil })
	wantCode(t, err, codes.Unauthenticated, "watch with a wrong key")
}

func TestWatchResumesAcrossAGatewayRestart(t *testing.T) {
	if gw == nil {
		t.Skip("-short: no gateway")
	}
	// A gateway of its own: this test restarts it.
	g := gatewaytest.StartT(t, gatewaytest.Options{})
	ctx := testContext(t)
	dialG := func(key string) *pingoraconfig.Client {
		c, err := pingoraconfig.Dial(ctx, g.AdminAddr, pingoraconfig.WithInsecure(), pingoraconfig.WithAPIKey(key),
			pingoraconfig.WithWatchBackoff(pingoraconfig.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	editor, viewer := dialG(gatewaytest.EditorKey), dialG(gatewaytest.ViewerKey)
	_, port := origin(t, "restarted")
	before, err := editor.CreateUpstream(ctx, fromJSON[pc.Upstream](t, upstreamJSON("before", port)))
	if err != nil {
		t.Fatal(err)
	}
	ev := watch(t, viewer, &pc.WatchRequest{StartRevision: before.GetMeta().GetRevision()})
	ev.next(t, "the replayed creation", func(e *pc.Event) bool { return e.GetResource().GetId() == "before" })

	// The file store's history is in memory: after the restart the gateway
	// holds no revision up to `before`, only those after it. Watch resumes
	// there instead of asking for a resync.
	if err := g.Restart(); err != nil {
		t.Fatal(err)
	}
	after, err := editor.CreateUpstream(ctx, fromJSON[pc.Upstream](t, upstreamJSON("after", port)))
	if err != nil {
		t.Fatal(err)
	}
	e := ev.next(t, "the creation after the restart", func(e *pc.Event) bool { return e.GetResource().GetId() == "after" })
	if e.GetRevision() != after.GetMeta().GetRevision() {
		t.Fatalf("event %v", e)
	}
}
