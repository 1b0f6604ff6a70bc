package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"gopkg.in/yaml.v3"
)

// YAML decodes a YAML document (the gateway's config or bootstrap file) into
// m through proto-JSON and checks it. A document that does not decode gets
// one violation, from DecodeViolation; otherwise every violation of Check.
func YAML(data []byte, m proto.Message) []Violation {
	js, err := YAMLToJSON(data)
	if err != nil {
		return []Violation{{Rule: "syntax", Message: err.Error()}}
	}
	return JSON(js, m)
}

// JSON decodes a proto-JSON document into m and checks it.
func JSON(data []byte, m proto.Message) []Violation {
	if v := UnknownFields(data, m.ProtoReflect().Descriptor()); len(v) > 0 {
		return v
	}
	if err := protojson.Unmarshal(data, m); err != nil {
		return []Violation{DecodeViolation(err)}
	}
	return Check(m)
}

// YAMLToJSON converts exactly one YAML document to JSON. Duplicate keys, a
// second document and anything YAML cannot parse are errors.
func YAMLToJSON(data []byte) ([]byte, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return []byte("{}"), nil
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("line %d: a second YAML document; a file holds one", extra.Line)
	}
	v, err := toJSON(&doc)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// object is a JSON object that keeps the document's key order, so that a
// decoder reports the mistakes of a document in the order they are written.
type object struct {
	keys   []string
	values map[string]any
}

func (o *object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kj, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		vj, err := json.Marshal(o.values[k])
		if err != nil {
			return nil, err
		}
		b.Write(kj)
		b.WriteByte(':')
		b.Write(vj)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func toJSON(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return &object{values: map[string]any{}}, nil
		}
		return toJSON(n.Content[0])
	case yaml.AliasNode:
		return toJSON(n.Alias)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := toJSON(c)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := &object{values: make(map[string]any, len(n.Content)/2)}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if _, dup := out.values[k]; dup {
				return nil, fmt.Errorf("line %d: duplicate key %q", n.Content[i].Line, k)
			}
			v, err := toJSON(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			out.keys = append(out.keys, k)
			out.values[k] = v
		}
		return out, nil
	default:
		switch n.Tag {
		case "!!null":
			return nil, nil
		case "!!bool":
			var b bool
			err := n.Decode(&b)
			return b, err
		case "!!int", "!!float":
			var f any
			if err := n.Decode(&f); err != nil {
				return nil, err
			}
			if s := strings.TrimPrefix(n.Value, "-"); n.Tag == "!!int" && strings.Trim(s, "0123456789") == "" {
				return json.Number(n.Value), nil
			}
			return f, nil
		default:
			return n.Value, nil
		}
	}
}

var (
	unknownField = regexp.MustCompile(`unknown field "([^"]+)"`)
	invalidValue = regexp.MustCompile(`invalid value for (\w+) (?:field|type) ([\w.]+)`)
	oneofSet     = regexp.MustCompile(`error parsing "([^"]+)", oneof [\w.]+ is already set`)
	durationErr  = regexp.MustCompile(`google\.protobuf\.Duration`)
)

// DecodeViolation names a protojson failure with the rule the gateway's
// loader reports for the same mistake: `unknown_field`, `type`, `enum`,
// `oneof`, `duration`, else `syntax`. protojson stops at the first error and
// does not say where in the document it is: Path holds the field name it
// gives, when it gives one, not the full path.
func DecodeViolation(err error) Violation {
	msg := err.Error()
	v := Violation{Rule: "syntax", Message: msg}
	switch {
	case unknownField.MatchString(msg):
		v.Rule, v.Path = "unknown_field", unknownField.FindStringSubmatch(msg)[1]
	case oneofSet.MatchString(msg):
		v.Rule, v.Path = "oneof", oneofSet.FindStringSubmatch(msg)[1]
	case durationErr.MatchString(msg):
		v.Rule = "duration"
		if strings.Contains(msg, "out of range") {
			v.Rule = "duration_range"
		}
	case strings.Contains(msg, "syntax error") && strings.Contains(msg, "unexpected token"):
		// Valid JSON from valid YAML: the value has the wrong shape (a
		// string for a list, a list for a mapping).
		v.Rule = "type"
	case invalidValue.MatchString(msg):
		m := invalidValue.FindStringSubmatch(msg)
		v.Rule, v.Path = "type", m[2]
		if m[1] == "enum" {
			v.Rule = "enum"
		}
	}
	return v
}

// UnknownFields reports every key of a proto-JSON document that is not a
// proto field name of its message, with its full path, as the gateway's
// loader does: the config files use the proto (snake_case) names only, so a
// camelCase JSON name, which protojson would accept, is unknown too.
func UnknownFields(data []byte, md protoreflect.MessageDescriptor) []Violation {
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil
	}
	var out []Violation
	unknownIn(doc, md, "", &out)
	return out
}

func unknownIn(v any, md protoreflect.MessageDescriptor, path string, out *[]Violation) {
	obj, ok := v.(map[string]any)
	if !ok {
		return
	}
	switch md.FullName() {
	case "google.protobuf.Duration", "google.protobuf.Timestamp", "google.protobuf.Struct", "google.protobuf.Value":
		return
	}
	fields := md.Fields()
	names := make([]string, 0, len(obj))
	for k := range obj {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fd := fields.ByName(protoreflect.Name(k))
		if fd == nil {
			hint := ""
			if j := fields.ByJSONName(k); j != nil {
				hint = fmt.Sprintf("; did you mean `%s`?", j.Name())
			}
			*out = append(*out, Violation{Path: keyPath(path, k), Rule: "unknown_field", Message: fmt.Sprintf("unknown field `%s`%s", k, hint)})
			continue
		}
		fp := join(path, k)
		switch {
		case fd.IsMap():
			if m, ok := obj[k].(map[string]any); ok && fd.MapValue().Kind() == protoreflect.MessageKind {
				for mk, mv := range m {
					unknownIn(mv, fd.MapValue().Message(), keyPath(fp, mk), out)
				}
			}
		case fd.IsList():
			if l, ok := obj[k].([]any); ok && fd.Kind() == protoreflect.MessageKind {
				for i, item := range l {
					unknownIn(item, fd.Message(), fmt.Sprintf("%s[%d]", fp, i), out)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			unknownIn(obj[k], fd.Message(), fp, out)
		}
	}
}
