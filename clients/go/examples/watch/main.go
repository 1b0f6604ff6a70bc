// Command watch is a business system that follows a gateway's events: it
// logs every route change (what it serves, and where) and every upstream
// health transition, and survives restarts of the gateway and of itself.
//
//	go run ./examples/watch -addr 127.0.0.1:9180 -key "$PINGORA_CONFIG_API_KEY" -state watch.state
//
// It records the revision of the last change it handled (and the ids of the
// events of that revision, since one write of several resources shares a
// revision) in -state after each one. Started again, it resumes from there:
// the gateway replays the changes it missed, and none is handled twice.
// Without a state, or when the gateway no longer holds that history
// (resync_required), it lists the routes and starts from the listing.
// Reconnections while it runs are the facade's (Client.Watch).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/pingora-config/pingora-config/clients/go/pingoraconfig"
	pc "github.com/pingora-config/pingora-config/clients/go/pingoraconfig/v1"
)

// state is what -state holds: where to resume.
type state struct {
	// The revision to watch from: that of the last resource event handled
	// (more events of it may follow), or the one after a listing. 0: none.
	Revision int64 `json:"revision"`
	// Ids of the events of Revision already handled.
	Seen []string `json:"seen"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9180", "the gateway's admin listener, host:port")
	key := flag.String("key", os.Getenv("PINGORA_CONFIG_API_KEY"), "API key (VIEWER is enough); default $PINGORA_CONFIG_API_KEY")
	insecure := flag.Bool("insecure", true, "plaintext HTTP/2 (an admin listener on loopback); false: TLS with the system roots")
	statePath := flag.String("state", "watch.state", "file that records the last revision handled")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	opts := []pingoraconfig.Option{}
	if *key != "" {
		opts = append(opts, pingoraconfig.WithAPIKey(*key))
	}
	if *insecure {
		opts = append(opts, pingoraconfig.WithInsecure())
	}
	client, err := pingoraconfig.Dial(ctx, *addr, opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	if err := run(ctx, client, *statePath); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

func run(ctx context.Context, client *pingoraconfig.Client, statePath string) error {
	st, err := load(statePath)
	if err != nil {
		return err
	}
	for {
		if st.Revision == 0 {
			// Nothing to resume from: take the routes as they are now.
			routes, rev, err := client.ListAllRoutes(ctx, nil)
			if err != nil {
				return err
			}
			for _, e := range routes {
				log.Printf("route %s serves %s -> %s", e.GetRoute().GetId(), uris(e.GetRoute()), target(e.GetRoute()))
			}
			st = state{Revision: rev + 1}
			if err := save(statePath, st); err != nil {
				return err
			}
		}
		log.Printf("watching from revision %d", st.Revision)
		req := &pc.WatchRequest{
			StartRevision: st.Revision,
			Kinds:         []pc.Event_Kind{pc.Event_RESOURCE, pc.Event_HEALTH},
		}
		err := client.Watch(ctx, req, func(ev *pc.Event) error {
			if ev.GetResource() == nil {
				react(ev)
				return nil
			}
			if ev.GetRevision() == st.Revision && slices.Contains(st.Seen, ev.GetId()) {
				return nil // handled before a restart
			}
			react(ev)
			if ev.GetRevision() != st.Revision {
				st = state{Revision: ev.GetRevision()}
			}
			st.Seen = append(st.Seen, ev.GetId())
			return save(statePath, st)
		})
		if !errors.Is(err, pingoraconfig.ErrResyncRequired) {
			return err
		}
		log.Printf("the gateway no longer holds the history from revision %d: listing again", st.Revision)
		st = state{}
	}
}

// react is the business logic: here, a log line per event of interest.
func react(ev *pc.Event) {
	switch p := ev.GetPayload().(type) {
	case *pc.Event_Resource:
		r := p.Resource
		if r.GetKind() != pc.Resource_ROUTE {
			return
		}
		switch {
		case r.GetType() == pc.ResourceEvent_DELETE:
			log.Printf("rev %d: route %s deleted (served %s)", ev.GetRevision(), r.GetId(), uris(r.GetOldValue().GetRoute()))
		case r.GetOldValue() == nil:
			nv := r.GetNewValue().GetRoute()
			log.Printf("rev %d: route %s created: %s -> %s", ev.GetRevision(), r.GetId(), uris(nv), target(nv))
		default:
			nv := r.GetNewValue().GetRoute()
			log.Printf("rev %d: route %s updated: %s -> %s", ev.GetRevision(), r.GetId(), uris(nv), target(nv))
		}
	case *pc.Event_Health:
		h := p.Health
		word := "UNHEALTHY"
		if h.GetHealthy() {
			word = "healthy"
		}
		log.Printf("upstream %s node %s is %s (%s check on %s: %s)", h.GetUpstreamId(), h.GetNode(), word, h.GetSource(), ev.GetNodeId(), h.GetReason())
	}
}

func uris(r *pc.Route) string {
	if len(r.GetUris()) == 0 {
		return "any path"
	}
	return strings.Join(r.GetUris(), ",")
}

func target(r *pc.Route) string {
	switch {
	case r.GetUpstreamId() != "":
		return "upstream " + r.GetUpstreamId()
	case r.GetServiceId() != "":
		return "service " + r.GetServiceId()
	case r.GetUpstream() != nil:
		return "an inline upstream"
	}
	return "a plugin"
}

func load(path string) (state, error) {
	var st state
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// save replaces the state file atomically (a crash leaves the old or the
// new one).
func save(path string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".watch-state-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
