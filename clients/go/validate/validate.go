// Package validate checks pingora-config messages with the rules written in
// the schema (the pingora_config.validate.v1 options), read from the
// message descriptors through protoreflect: the same rules, with the same
// rule names and paths, as the gateway's loader and management API.
//
// It checks decoded messages. What only a document shows (an unknown key, a
// value of the wrong type, a YAML syntax error) is the decoder's to report:
// see DecodeError for protojson and YAML failures named with the same rules.
package validate

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	validatev1 "github.com/pingora-config/pingora-config/clients/go/validate/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Violation is one broken rule.
type Violation struct {
	// Path of the offending value from the root message, in proto field
	// names, for example `routes[0].upstream_id`; empty for the message
	// itself.
	Path string
	// Rule is the rule broken, named as in validate.proto (`required`,
	// `min_len`, `format`, `ref`, ...).
	Rule string
	// Message says what is wrong.
	Message string
}

func (v Violation) String() string {
	p := v.Path
	if p == "" {
		p = "(document)"
	}
	return fmt.Sprintf("%s: %s [%s]", p, v.Message, v.Rule)
}

// Error holds every violation of a message.
type Error struct {
	Violations []Violation
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.String()
	}
	return strings.Join(parts, "\n")
}

// Check returns every violation of m, ordered by path. References between
// resources (`ref`) are resolved when m holds the referenced collections
// (a whole Config); references to other collections are not checked.
func Check(m proto.Message) []Violation {
	w := &walk{ids: map[string]map[string]bool{}}
	root := m.ProtoReflect()
	w.message(root, "")
	for _, r := range w.refs {
		if root.Descriptor().Fields().ByName(protoreflect.Name(r.collection)) == nil {
			continue
		}
		if !w.ids[r.collection][r.id] {
			kind := strings.TrimSuffix(r.collection, "s")
			w.report(r.path, "ref", fmt.Sprintf("%s `%s` does not exist in `%s`", kind, r.id, r.collection))
		}
	}
	sort.SliceStable(w.out, func(i, j int) bool { return w.out[i].Path < w.out[j].Path })
	return w.out
}

// Validate is Check as an error: nil when m breaks no rule, else an *Error.
func Validate(m proto.Message) error {
	if v := Check(m); len(v) > 0 {
		return &Error{Violations: v}
	}
	return nil
}

type reference struct {
	collection, id, path string
}

type walk struct {
	out  []Violation
	refs []reference
	// Ids of the root's collections (`unique_by`), by collection name.
	ids map[string]map[string]bool
}

func (w *walk) report(path, rule, msg string) {
	w.out = append(w.out, Violation{Path: path, Rule: rule, Message: msg})
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

var ident = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func keyPath(path, key string) string {
	if ident.MatchString(key) {
		return join(path, key)
	}
	return path + "[" + strconv.Quote(key) + "]"
}

func fieldRules(fd protoreflect.FieldDescriptor) *validatev1.FieldRules {
	r, _ := proto.GetExtension(fd.Options(), validatev1.E_Field).(*validatev1.FieldRules)
	if r == nil {
		return &validatev1.FieldRules{}
	}
	return r
}

func messageRules(md protoreflect.MessageDescriptor) *validatev1.MessageRules {
	r, _ := proto.GetExtension(md.Options(), validatev1.E_Message).(*validatev1.MessageRules)
	if r == nil {
		return &validatev1.MessageRules{}
	}
	return r
}

func oneofRequired(od protoreflect.OneofDescriptor) bool {
	r, _ := proto.GetExtension(od.Options(), validatev1.E_Oneof).(*validatev1.OneofRules)
	return r.GetRequired()
}

// isSet is proto3 presence: a zero scalar or an empty list is unset.
func isSet(m protoreflect.Message, fd protoreflect.FieldDescriptor) bool {
	switch {
	case fd.IsList():
		return m.Get(fd).List().Len() > 0
	case fd.IsMap():
		return m.Get(fd).Map().Len() > 0
	default:
		return m.Has(fd)
	}
}

// dottedIsSet: `plugins.mock` is set when `plugins` is and has `mock` set.
func dottedIsSet(m protoreflect.Message, name string) bool {
	head, rest, dotted := strings.Cut(name, ".")
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(head))
	if fd == nil || !isSet(m, fd) {
		return false
	}
	if !dotted {
		return true
	}
	if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() {
		return false
	}
	return dottedIsSet(m.Get(fd).Message(), rest)
}

func (w *walk) message(m protoreflect.Message, path string) {
	md := m.Descriptor()
	fields := md.Fields()
	reported := map[protoreflect.Name]bool{}
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		r := fieldRules(fd)
		fpath := join(path, string(fd.Name()))
		before := len(w.out)
		if isSet(m, fd) {
			w.field(m, fd, r, fpath)
		}
		reported[fd.Name()] = len(w.out) > before
		if reported[fd.Name()] {
			continue
		}
		// proto3 has no absent list: a missing list is an empty one, which
		// the gateway reports as `min_items` (or `required` when the document
		// leaves the list out, which a decoded message cannot tell).
		if fd.IsList() && r.MinItems != nil && r.GetMinItems() > 0 && !isSet(m, fd) {
			w.report(fpath, "min_items", fmt.Sprintf("missing `%s`: needs at least %d items", fd.Name(), r.GetMinItems()))
			continue
		}
		if r.GetRequired() && !isSet(m, fd) {
			w.report(fpath, "required", fmt.Sprintf("missing required field `%s`", fd.Name()))
		}
	}
	oneofs := md.Oneofs()
	for i := 0; i < oneofs.Len(); i++ {
		od := oneofs.Get(i)
		if od.IsSynthetic() || !oneofRequired(od) || m.WhichOneof(od) != nil {
			continue
		}
		var names []string
		for j := 0; j < od.Fields().Len(); j++ {
			names = append(names, "`"+string(od.Fields().Get(j).Name())+"`")
		}
		w.report(path, "oneof_required", "exactly one of "+strings.Join(names, ", ")+" is required")
	}
	anyReported := func(names []string) bool {
		for _, n := range names {
			head, _, _ := strings.Cut(n, ".")
			if reported[protoreflect.Name(head)] {
				return true
			}
		}
		return false
	}
	headPath := func(name string) string {
		head, _, _ := strings.Cut(name, ".")
		return join(path, head)
	}
	rules := messageRules(md)
	for _, g := range rules.GetOneOf() {
		if anyReported(g.GetFields()) {
			continue
		}
		var chosen []string
		for _, n := range g.GetFields() {
			if dottedIsSet(m, n) {
				chosen = append(chosen, n)
			}
		}
		list := quoteList(g.GetFields())
		if len(chosen) > 1 {
			w.report(headPath(chosen[1]), "one_of", "only one of "+list+" may be set")
		} else if len(chosen) == 0 && g.GetRequired() {
			w.report(path, "one_of", "exactly one of "+list+" is required")
		}
	}
	for _, g := range rules.GetAnyOf() {
		if anyReported(g.GetFields()) || slices.ContainsFunc(g.GetFields(), func(n string) bool { return dottedIsSet(m, n) }) {
			continue
		}
		w.report(path, "any_of", "at least one of "+quoteList(g.GetFields())+" must be set")
	}
	for _, g := range rules.GetRequires() {
		f := g.GetFields()
		if len(f) == 0 || !dottedIsSet(m, f[0]) {
			continue
		}
		for _, other := range f[1:] {
			if !dottedIsSet(m, other) {
				w.report(headPath(other), "requires", fmt.Sprintf("`%s` is required when `%s` is set", other, f[0]))
			}
		}
	}
	for _, rw := range rules.GetRequiredWhen() {
		fd := fields.ByName(protoreflect.Name(rw.GetWhen()))
		if fd == nil || !m.Has(fd) {
			continue
		}
		var value string
		switch fd.Kind() {
		case protoreflect.EnumKind:
			if ev := fd.Enum().Values().ByNumber(m.Get(fd).Enum()); ev != nil {
				value = string(ev.Name())
			}
		case protoreflect.StringKind:
			value = m.Get(fd).String()
		}
		if slices.Contains(rw.GetEquals(), value) && !dottedIsSet(m, rw.GetField()) {
			w.report(headPath(rw.GetField()), "required_when",
				fmt.Sprintf("`%s` is required when `%s` is %s", rw.GetField(), rw.GetWhen(), value))
		}
	}
	for _, c := range rules.GetCompare() {
		l, lok := comparable(m, c.GetLhs())
		r, rok := comparable(m, c.GetRhs())
		if !lok || !rok {
			continue
		}
		var ok bool
		var sym string
		switch c.GetOp() {
		case validatev1.Compare_LT:
			ok, sym = l < r, "<"
		case validatev1.Compare_LTE:
			ok, sym = l <= r, "<="
		case validatev1.Compare_GT:
			ok, sym = l > r, ">"
		case validatev1.Compare_GTE:
			ok, sym = l >= r, ">="
		default:
			ok = true
		}
		if !ok {
			w.report(headPath(c.GetLhs()), "compare", fmt.Sprintf("`%s` must be %s `%s`", c.GetLhs(), sym, c.GetRhs()))
		}
	}
}

// comparable is a number, or a duration in nanoseconds, of a set field.
func comparable(m protoreflect.Message, name string) (float64, bool) {
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil || !m.Has(fd) || fd.IsList() || fd.IsMap() {
		return 0, false
	}
	v := m.Get(fd)
	switch fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return float64(v.Int()), true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return float64(v.Uint()), true
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return v.Float(), true
	case protoreflect.MessageKind:
		if fd.Message().FullName() == "google.protobuf.Duration" {
			return float64(durationNanos(v.Message())), true
		}
	}
	return 0, false
}

func durationNanos(m protoreflect.Message) int64 {
	f := m.Descriptor().Fields()
	return m.Get(f.ByName("seconds")).Int()*1e9 + m.Get(f.ByName("nanos")).Int()
}

func (w *walk) field(m protoreflect.Message, fd protoreflect.FieldDescriptor, r *validatev1.FieldRules, path string) {
	v := m.Get(fd)
	switch {
	case fd.IsList():
		list := v.List()
		w.listRules(fd, r, list, path)
		for i := 0; i < list.Len(); i++ {
			w.value(fd, r.GetItems(), list.Get(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case fd.IsMap():
		mp := v.Map()
		var keys []protoreflect.MapKey
		mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
			keys = append(keys, k)
			return true
		})
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			kp := keyPath(path, k.String())
			w.value(fd.MapKey(), r.GetKeys(), k.Value(), kp)
			w.value(fd.MapValue(), r.GetValues(), mp.Get(k), kp)
		}
	default:
		w.value(fd, r, v, path)
	}
}

func (w *walk) listRules(fd protoreflect.FieldDescriptor, r *validatev1.FieldRules, list protoreflect.List, path string) {
	n := uint32(list.Len())
	if r.MinItems != nil && n < r.GetMinItems() {
		w.report(path, "min_items", fmt.Sprintf("needs at least %d items, has %d", r.GetMinItems(), n))
	}
	if r.MaxItems != nil && n > r.GetMaxItems() {
		w.report(path, "max_items", fmt.Sprintf("allows at most %d items, has %d", r.GetMaxItems(), n))
	}
	if r.GetUnique() {
		seen := map[string]int{}
		for i := 0; i < list.Len(); i++ {
			key := fmt.Sprint(list.Get(i).Interface())
			if first, dup := seen[key]; dup {
				w.report(fmt.Sprintf("%s[%d]", path, i), "unique", fmt.Sprintf("duplicate value %s, already at [%d]", key, first))
			} else {
				seen[key] = i
			}
		}
	}
	if key := r.GetUniqueBy(); key != "" && fd.Kind() == protoreflect.MessageKind {
		kf := fd.Message().Fields().ByName(protoreflect.Name(key))
		if kf == nil {
			return
		}
		keyRequired := fieldRules(kf).GetRequired()
		seen := map[string]int{}
		for i := 0; i < list.Len(); i++ {
			id := list.Get(i).Message().Get(kf).String()
			ip := fmt.Sprintf("%s[%d].%s", path, i, key)
			switch first, dup := seen[id]; {
			case id == "" && keyRequired:
			case id == "":
				w.report(ip, "required", fmt.Sprintf("missing required field `%s` (every item of `%s` needs a unique %s)", key, fd.Name(), key))
			case dup:
				w.report(ip, "unique_by", fmt.Sprintf("duplicate %s `%s`, already used by %s[%d]", key, id, fd.Name(), first))
			default:
				seen[id] = i
			}
		}
		if !strings.ContainsAny(path, ".[") {
			ids := map[string]bool{}
			for id := range seen {
				ids[id] = true
			}
			w.ids[string(fd.Name())] = ids
		}
	}
}

func (w *walk) value(fd protoreflect.FieldDescriptor, r *validatev1.FieldRules, v protoreflect.Value, path string) {
	if r == nil {
		r = &validatev1.FieldRules{}
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		switch fd.Message().FullName() {
		case "google.protobuf.Duration":
			n := durationNanos(v.Message())
			if s := r.GetDurationGte(); s != "" {
				if min, ok := parseDuration(s); ok && n < min {
					w.report(path, "duration_gte", "must be at least "+s)
				}
			}
			if s := r.GetDurationLte(); s != "" {
				if max, ok := parseDuration(s); ok && n > max {
					w.report(path, "duration_lte", "must be at most "+s)
				}
			}
		case "google.protobuf.Timestamp":
		default:
			w.message(v.Message(), path)
		}
	case protoreflect.EnumKind:
		if v.Enum() == 0 {
			w.report(path, "enum", "the unset value; leave the field out to get the default")
		} else if fd.Enum().Values().ByNumber(v.Enum()) == nil {
			w.report(path, "enum", fmt.Sprintf("unknown value %d", v.Enum()))
		}
	case protoreflect.StringKind:
		w.str(r, v.String(), path)
	case protoreflect.BytesKind:
	case protoreflect.BoolKind:
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			w.report(path, "type", "expected a finite number")
			return
		}
		w.rng(r, f, path)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		w.integer(r, float64(v.Uint()), int64(v.Uint()), path)
	default:
		w.integer(r, float64(v.Int()), v.Int(), path)
	}
}

func (w *walk) integer(r *validatev1.FieldRules, f float64, i int64, path string) {
	if in := r.GetIntIn(); len(in) > 0 && !slices.Contains(in, i) {
		w.report(path, "int_in", fmt.Sprintf("%d is not allowed; allowed: %v", i, in))
	}
	w.rng(r, f, path)
}

func (w *walk) rng(r *validatev1.FieldRules, v float64, path string) {
	if r.Gte != nil && !(v >= r.GetGte()) {
		w.report(path, "gte", fmt.Sprintf("must be >= %v, is %v", r.GetGte(), v))
	}
	if r.Lte != nil && !(v <= r.GetLte()) {
		w.report(path, "lte", fmt.Sprintf("must be <= %v, is %v", r.GetLte(), v))
	}
	if r.Gt != nil && !(v > r.GetGt()) {
		w.report(path, "gt", fmt.Sprintf("must be > %v, is %v", r.GetGt(), v))
	}
	if r.Lt != nil && !(v < r.GetLt()) {
		w.report(path, "lt", fmt.Sprintf("must be < %v, is %v", r.GetLt(), v))
	}
}

func (w *walk) str(r *validatev1.FieldRules, s, path string) {
	shown := "`" + s + "`"
	if r.GetSecret() {
		shown = "the secret"
	}
	n := uint32(utf8.RuneCountInString(s))
	if r.MinLen != nil && n < r.GetMinLen() {
		w.report(path, "min_len", fmt.Sprintf("must be at least %d characters long, is %d", r.GetMinLen(), n))
	}
	if r.MaxLen != nil && n > r.GetMaxLen() {
		w.report(path, "max_len", fmt.Sprintf("must be at most %d characters long, is %d", r.GetMaxLen(), n))
	}
	if r.Pattern != nil && !compiled(r.GetPattern()).MatchString(s) {
		w.report(path, "pattern", shown+" does not match the pattern "+r.GetPattern())
	}
	if in := r.GetIn(); len(in) > 0 && !slices.Contains(in, s) {
		w.report(path, "in", shown+" is not allowed; allowed: "+strings.Join(in, ", "))
	}
	if f := r.GetFormat(); f != validatev1.Format_FORMAT_UNSPECIFIED && !MatchesFormat(f, s) {
		w.report(path, "format", shown+" is not "+describe(f))
	}
	if c := r.GetRef(); c != "" && s != "" {
		w.refs = append(w.refs, reference{collection: c, id: s, path: path})
	}
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "`" + n + "`"
	}
	return strings.Join(q, ", ")
}
