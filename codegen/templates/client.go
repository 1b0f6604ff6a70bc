{{ header -}}

// Package pingoraconfig is the Go client of the pingora-config management
// API. Dial a gateway's admin listener, then call the typed helpers (one per
// RPC of the management services, generated from their descriptors) or the
// generated gRPC clients directly. The messages are the ones of
// github.com/pingora-config/pingora-config/clients/go/pingoraconfig/v1, and
// package github.com/pingora-config/pingora-config/clients/go/validate checks
// them with the schema's rules before they are sent.
package pingoraconfig

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	pingoraconfigv1 "github.com/pingora-config/pingora-config/clients/go/pingoraconfig/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Client talks to the admin listener of one gateway.
type Client struct {
	conn    *grpc.ClientConn
	backoff Backoff
{%- for s in services %}

	// {{ s.name }} is the generated client of pingora_config.v1.{{ s.name }}.
	{{ s.name }} pingoraconfigv1.{{ s.name }}Client
{%- endfor %}
}

// Backoff bounds the delay between two connection attempts of Watch: it
// starts at Initial, doubles after each failed attempt up to Max, and goes
// back to Initial once an event arrives. Each delay is jittered (50-100%).
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// DefaultBackoff is the backoff of Watch unless WithWatchBackoff says
// otherwise.
var DefaultBackoff = Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second}

// An Option configures Dial.
type Option func(*options)

type options struct {
	apiKey   string
	tls      *tls.Config
	insecure bool
	block    bool
	backoff  Backoff
	dial     []grpc.DialOption
}

// WithAPIKey sends key on every call as the metadata
// `authorization: Bearer <key>` (see Bootstrap.admin.api_keys).
func WithAPIKey(key string) Option {
	return func(o *options) { o.apiKey = key }
}

// WithTLS sets the TLS configuration (CA, client certificate, server name).
// Without it, Dial uses TLS with the system roots.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls = cfg }
}

// WithInsecure turns TLS off: plain HTTP/2, for an admin listener on
// loopback. An API key is then sent in clear.
func WithInsecure() Option {
	return func(o *options) { o.insecure = true }
}

// WithBlock makes Dial wait, within its context, until the connection is
// ready, instead of connecting at the first call.
func WithBlock() Option {
	return func(o *options) { o.block = true }
}

// WithWatchBackoff replaces DefaultBackoff for Watch.
func WithWatchBackoff(b Backoff) Option {
	return func(o *options) { o.backoff = b }
}

// WithDialOptions adds gRPC dial options (interceptors, keepalive, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// Dial returns a client of the admin listener at addr (`host:port`).
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	o := options{backoff: DefaultBackoff}
	for _, opt := range opts {
		opt(&o)
	}
	var creds credentials.TransportCredentials
	switch {
	case o.insecure:
		creds = insecure.NewCredentials()
	case o.tls != nil:
		creds = credentials.NewTLS(o.tls)
	default:
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if o.apiKey != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(apiKey{key: o.apiKey, secure: !o.insecure}))
	}
	dial = append(dial, o.dial...)
	conn, err := grpc.NewClient(addr, dial...)
	if err != nil {
		return nil, fmt.Errorf("pingoraconfig: dial %s: %w", addr, err)
	}
	if o.block {
		conn.Connect()
		for state := conn.GetState(); state != connectivity.Ready; state = conn.GetState() {
			if !conn.WaitForStateChange(ctx, state) {
				_ = conn.Close()
				return nil, fmt.Errorf("pingoraconfig: dial %s: %w", addr, ctx.Err())
			}
		}
	}
	c := &Client{conn: conn, backoff: o.backoff}
{%- for s in services %}
	c.{{ s.name }} = pingoraconfigv1.New{{ s.name }}Client(conn)
{%- endfor %}
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error {
	return c.conn.Close()
}

type apiKey struct {
	key    string
	secure bool
}

func (k apiKey) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + k.key}, nil
}

func (k apiKey) RequireTransportSecurity() bool {
	return k.secure
}
{%- for s in services %}
{%- for m in s.methods %}
{%- if !m.server_streaming %}

// {{ m.helper }} calls {{ s.name }}.{{ m.rpc }}.
{%- if !m.comment.is_empty() %}
//
{%- for l in m.comment %}
// {{ l }}
{%- endfor %}
{%- endif %}
func (c *Client) {{ m.helper }}(ctx context.Context, {{ m.go_params() }}opts ...grpc.CallOption) (*pingoraconfigv1.{{ m.output.go }}, error) {
	return c.{{ s.name }}.{{ m.rpc }}(ctx, {{ m.go_request() }}, opts...)
}
{%- endif %}
{%- if let Some(p) = m.pager %}

// {{ p.go_name }} calls {{ m.rpc }} page by page and returns every item, with
// the store revision the listing was read at (watch from revision + 1 to
// follow the changes made after it).
func (c *Client) {{ p.go_name }}(ctx context.Context, {{ p.go_params() }}opts ...grpc.CallOption) ([]*pingoraconfigv1.{{ p.item.go }}, int64, error) {
	var items []*pingoraconfigv1.{{ p.item.go }}
	token := ""
	for {
		page, err := c.{{ s.name }}.{{ m.rpc }}(ctx, &pingoraconfigv1.{{ m.input.go }}{PageToken: token{{ p.go_fields() }}}, opts...)
		if err != nil {
			return nil, 0, err
		}
		items = append(items, page.GetItems()...)
		if page.GetNextPageToken() == "" {
			return items, page.GetRevision(), nil
		}
		token = page.GetNextPageToken()
	}
}
{%- endif %}
{%- if m.watch %}

// {{ m.helper }} calls {{ s.name }}.{{ m.rpc }} and passes each event to handle
// until ctx ends, handle returns an error (returned as is), or the stream
// fails with a status that a retry cannot fix (UNAUTHENTICATED,
// PERMISSION_DENIED, INVALID_ARGUMENT, ...). When the stream breaks
// (UNAVAILABLE when the gateway restarts, a network error), it reconnects
// with backoff and resumes at the revision of the last resource event it
// passed on: one write of several resources shares a revision, so it asks for
// that revision again and drops the events it already delivered (by id).
// Before any resource event it resumes at req's start_revision. When the
// gateway restarted and holds every revision after that last one but no
// longer that one (the file store keeps its history in memory), it resumes
// at the next revision instead: nothing written since is lost, but events of
// that last revision that had not arrived when the stream broke cannot be
// replayed (a write's events are sent together). After any other
// resync_required event it returns ErrResyncRequired: the store no longer
// holds the history; list again and watch from the listing's revision + 1.
{%- if !m.comment.is_empty() %}
//
{%- for l in m.comment %}
// {{ l }}
{%- endfor %}
{%- endif %}
func (c *Client) {{ m.helper }}(ctx context.Context, req *pingoraconfigv1.{{ m.input.go }}, handle func(*pingoraconfigv1.{{ m.output.go }}) error, opts ...grpc.CallOption) error {
	next, ok := proto.Clone(req).(*pingoraconfigv1.{{ m.input.go }})
	if !ok || next == nil {
		next = &pingoraconfigv1.{{ m.input.go }}{}
	}
	backoff := c.backoff.Initial
	var last int64
	seen := map[string]bool{}
	for {
		attempt, cancel := context.WithCancel(ctx)
		stream, err := c.{{ s.name }}.{{ m.rpc }}(attempt, next, opts...)
		resume := false
		for err == nil {
			var ev *pingoraconfigv1.{{ m.output.go }}
			if ev, err = stream.Recv(); err != nil {
				break
			}
			backoff = c.backoff.Initial
			if rs := ev.GetResyncRequired(); rs != nil && last > 0 && rs.GetOldestRevision() == last+1 {
				next.StartRevision = last + 1
				resume = true
				break
			}
			if ev.GetResource() != nil {
				if ev.GetRevision() == last && seen[ev.GetId()] {
					continue
				}
				if ev.GetRevision() != last {
					last = ev.GetRevision()
					clear(seen)
				}
				seen[ev.GetId()] = true
				next.StartRevision = last
			}
			if err := handle(ev); err != nil {
				cancel()
				return err
			}
			if ev.GetResyncRequired() != nil {
				cancel()
				return ErrResyncRequired
			}
		}
		cancel()
		if resume {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retryable(err) {
			return err
		}
		delay := backoff/2 + rand.N(backoff/2+1)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
		backoff = min(backoff*2, c.backoff.Max)
	}
}
{%- endif %}
{%- endfor %}
{%- endfor %}

// ErrResyncRequired is returned by Watch after it passed on a
// resync_required event.
var ErrResyncRequired = errors.New("pingoraconfig: watch: resync required: list again and watch from its revision + 1")

// IsConflict reports whether err is the ABORTED status of a write whose
// expected revision is stale: the resource (or, for Apply, the config)
// changed since it was read. Read it again, reapply the change and retry.
func IsConflict(err error) bool {
	return status.Code(err) == codes.Aborted
}

// FieldViolations returns the google.rpc.BadRequest field violations that
// a rejected write carries (INVALID_ARGUMENT for a rule of the schema,
// FAILED_PRECONDITION for a reference to nothing): one per offending field,
// its path in the stored config (for example `routes[3].uris[0]`) and why.
// Nil when err carries none.
func FieldViolations(err error) []*errdetails.BadRequest_FieldViolation {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	var out []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			out = append(out, br.GetFieldViolations()...)
		}
	}
	return out
}

// retryable tells whether a broken stream is worth reconnecting.
func retryable(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.Unimplemented,
		codes.FailedPrecondition, codes.NotFound, codes.OutOfRange, codes.AlreadyExists:
		return false
	}
	return true
}
