package validate_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	pingoraconfigv1 "github.com/pingora-config/pingora-config/clients/go/pingoraconfig/v1"
	"github.com/pingora-config/pingora-config/clients/go/validate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The shared corpus, proto/testdata/{config,bootstrap}/{valid,invalid}: the
// Go validator must accept every valid document and report exactly the
// (path, rule) pairs of each invalid one's `# error:` header, like the
// gateway's loader.
//
// Two limits of the Go path are checked rather than skipped:
//
//   - protojson stops at the first decoding error and does not say where it
//     is. For a document that fails to decode, the header must list exactly
//     one error, with the rule DecodeViolation gives, and a path ending with
//     the field protojson names (when it names one).
//   - Where the decoded message cannot show what the document said, the
//     document is listed in exceptions with the reason; the test fails if it
//     starts agreeing (then remove it from the list).
var exceptions = map[string]string{
	"config/invalid/node_port_string.yaml": "protojson accepts a quoted number for a 32-bit integer (proto-JSON " +
		"allows it); the loader accepts quoted numbers for 64-bit integers only",
	"bootstrap/invalid/threads_string.yaml": "protojson accepts a quoted number for a 32-bit integer (proto-JSON " +
		"allows it); the loader accepts quoted numbers for 64-bit integers only",
	"config/invalid/plugin_written_as_null.yaml": "protojson reads null as an unset message field; the loader " +
		"rejects a null message",
	"config/invalid/upstream_scheme_unspecified.yaml": "the zero enum value written out decodes to an unset field " +
		"(proto3 has no presence for it), so the message cannot show it was written",
	"bootstrap/invalid/tls_min_version_unspecified.yaml": "the zero enum value written out decodes to an unset " +
		"field (proto3 has no presence for it), so the message cannot show it was written",
	"config/invalid/several_errors_in_one_document.yaml": "protojson stops at the first decoding error (the " +
		"lower-case enum name), so the three rule violations after it are not reached",
}

type corpusCase struct {
	name, text string
	bootstrap  bool
	valid      bool
	errors     map[string]bool
}

func corpus(t *testing.T) []corpusCase {
	root := filepath.Join("..", "..", "..", "proto", "testdata")
	var cases []corpusCase
	for _, kind := range []string{"config", "bootstrap"} {
		for _, validity := range []string{"valid", "invalid"} {
			files, err := filepath.Glob(filepath.Join(root, kind, validity, "*.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(files)
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				c := corpusCase{
					name:      kind + "/" + validity + "/" + filepath.Base(f),
					text:      string(data),
					bootstrap: kind == "bootstrap",
					valid:     validity == "valid",
					errors:    map[string]bool{},
				}
				for _, line := range strings.Split(c.text, "\n") {
					if !strings.HasPrefix(line, "#") {
						break
					}
					if rest, ok := strings.CutPrefix(line, "# error: "); ok {
						rest = strings.TrimSpace(rest)
						i := strings.LastIndex(rest, " ")
						c.errors[strings.TrimSpace(rest[:i])+" "+rest[i+1:]] = true
					}
				}
				cases = append(cases, c)
			}
		}
	}
	if len(cases) < 40 {
		t.Fatalf("corpus has %d documents", len(cases))
	}
	return cases
}

func pairs(vs []validate.Violation) map[string]bool {
	out := map[string]bool{}
	for _, v := range vs {
		p := v.Path
		if p == "" {
			p = "(document)"
		}
		out[p+" "+v.Rule] = true
	}
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func equal(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// outcome checks one document; "" when Go agrees with the header.
func outcome(c corpusCase) string {
	var msg proto.Message = &pingoraconfigv1.Config{}
	if c.bootstrap {
		msg = &pingoraconfigv1.Bootstrap{}
	}
	js, err := validate.YAMLToJSON([]byte(c.text))
	if err != nil {
		if c.errors["(document) syntax"] && len(c.errors) == 1 {
			return ""
		}
		return fmt.Sprintf("YAML error %v, expected %v", err, keys(c.errors))
	}
	if v := validate.UnknownFields(js, msg.ProtoReflect().Descriptor()); len(v) > 0 {
		if got := pairs(v); !equal(got, c.errors) {
			return fmt.Sprintf("expected %v\n    got %v", keys(c.errors), keys(got))
		}
		return ""
	}
	if err := protojson.Unmarshal(js, msg); err != nil {
		v := validate.DecodeViolation(err)
		if c.valid {
			return fmt.Sprintf("valid document does not decode: %v", err)
		}
		if len(c.errors) != 1 {
			return fmt.Sprintf("decoding stops at the first error (%v [%s]), expected %v", err, v.Rule, keys(c.errors))
		}
		for want := range c.errors {
			path, rule, _ := strings.Cut(want, " ")
			last := strings.TrimRight(path, "]0123456789[")
			last = last[strings.LastIndex(last, ".")+1:]
			if rule != v.Rule || (v.Path != "" && normal(last) != normal(v.Path)) {
				return fmt.Sprintf("decode error %v gives %s [%s], expected %s", err, v.Path, v.Rule, want)
			}
		}
		return ""
	}
	got := pairs(validate.Check(msg))
	if c.valid && len(got) > 0 {
		return fmt.Sprintf("valid document rejected: %v", validate.Check(msg))
	}
	if !c.valid && !equal(got, c.errors) {
		return fmt.Sprintf("expected %v\n    got %v\n    %v", keys(c.errors), keys(got), validate.Check(msg))
	}
	return ""
}

// normal compares a proto name with the JSON name protojson gives.
func normal(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", ""))
}

func TestCorpus(t *testing.T) {
	agree := 0
	for _, c := range corpus(t) {
		problem := outcome(c)
		reason, excepted := exceptions[c.name]
		switch {
		case problem == "" && excepted:
			t.Errorf("%s: listed as an exception (%s) but Go agrees now: remove it", c.name, reason)
		case problem == "":
			agree++
		case excepted:
			t.Logf("%s: known difference (%s): %s", c.name, reason, problem)
		default:
			t.Errorf("%s: %s", c.name, problem)
		}
	}
	t.Logf("%d documents agree, %d known differences", agree, len(exceptions))
}
