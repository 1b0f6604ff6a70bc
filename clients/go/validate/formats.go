package validate

import (
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	validatev1 "github.com/pingora-config/pingora-config/clients/go/validate/v1"
)

// The well-known formats, one regular expression each: the same
// expressions as the gateway's (rules/src/formats.rs) and the JSON Schema.
const (
	label = `[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?`
	octet = `(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])`
	port  = `(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})`
)

func hostname() string { return label + `(?:\.` + label + `)*` }

func ipv4() string { return octet + `(?:\.` + octet + `){3}` }

func ipv6() string {
	h := `[0-9A-Fa-f]{1,4}`
	v4 := ipv4()
	alts := []string{
		`(?:` + h + `:){7}` + h,
		`(?:` + h + `:){1,7}:`,
		`(?:` + h + `:){1,6}:` + h,
		`(?:` + h + `:){1,5}(?::` + h + `){1,2}`,
		`(?:` + h + `:){1,4}(?::` + h + `){1,3}`,
		`(?:` + h + `:){1,3}(?::` + h + `){1,4}`,
		`(?:` + h + `:){1,2}(?::` + h + `){1,5}`,
		h + `:(?::` + h + `){1,6}`,
		`:(?:(?::` + h + `){1,7}|:)`,
		`::(?:[Ff]{4}:)?` + v4,
		`(?:` + h + `:){1,4}:` + v4,
	}
	for i, a := range alts {
		alts[i] = "(?:" + a + ")"
	}
	return strings.Join(alts, "|")
}

func formatPattern(f validatev1.Format) string {
	var p string
	switch f {
	case validatev1.Format_HOSTNAME:
		p = hostname()
	case validatev1.Format_HOST_PATTERN:
		p = `(?:\*\.)?` + hostname()
	case validatev1.Format_HOST:
		p = hostname() + "|" + ipv4() + "|" + ipv6()
	case validatev1.Format_IP:
		p = ipv4() + "|" + ipv6()
	case validatev1.Format_CIDR:
		p = ipv4() + `(?:/(?:3[0-2]|[12]?[0-9]))?|(?:` + ipv6() + `)(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?`
	case validatev1.Format_SOCKET_ADDRESS:
		p = `(?:` + hostname() + `|` + ipv4() + `|\[(?:` + ipv6() + `)\]):` + port
	case validatev1.Format_URL:
		p = `https?://[^\s/?#@]+(?:[/?#]\S*)?`
	case validatev1.Format_URI_PATH:
		p = `/\S*`
	case validatev1.Format_HEADER_NAME:
		p = "[!#$%&'*+.^_`|~0-9A-Za-z-]+"
	case validatev1.Format_ID:
		p = `[A-Za-z0-9._-]{1,64}`
	case validatev1.Format_PEM:
		p = `\s*-----BEGIN [A-Z0-9 ]+-----[\s\S]*-----END [A-Z0-9 ]+-----\s*`
	default:
		return ""
	}
	return `^(?:` + p + `)$`
}

var (
	patternsMu sync.Mutex
	patterns   = map[string]*regexp.Regexp{}
)

// compiled compiles a pattern of the schema once. The schema's patterns are
// checked when it is generated, so one that does not compile here is a
// dialect difference: it then matches nothing, and says so.
func compiled(p string) *regexp.Regexp {
	patternsMu.Lock()
	defer patternsMu.Unlock()
	re, ok := patterns[p]
	if !ok {
		var err error
		if re, err = regexp.Compile(p); err != nil {
			re = regexp.MustCompile(`^\b$`)
		}
		patterns[p] = re
	}
	return re
}

// MatchesFormat tells whether s has the well-known format f.
func MatchesFormat(f validatev1.Format, s string) bool {
	if f == validatev1.Format_REGEX {
		_, err := regexp.Compile(s)
		return err == nil
	}
	switch f {
	case validatev1.Format_HOSTNAME, validatev1.Format_HOST_PATTERN, validatev1.Format_HOST:
		if utf8.RuneCountInString(s) > 253 {
			return false
		}
	}
	p := formatPattern(f)
	return p == "" || compiled(p).MatchString(s)
}

func describe(f validatev1.Format) string {
	switch f {
	case validatev1.Format_HOSTNAME:
		return "a hostname such as `api.example.com`"
	case validatev1.Format_HOST_PATTERN:
		return "a hostname or wildcard such as `*.example.com`"
	case validatev1.Format_HOST:
		return "a hostname or IP address"
	case validatev1.Format_IP:
		return "an IPv4 or IPv6 address"
	case validatev1.Format_CIDR:
		return "an IP address or CIDR block such as `10.0.0.0/8`"
	case validatev1.Format_SOCKET_ADDRESS:
		return "an address `host:port` such as `127.0.0.1:9080`"
	case validatev1.Format_URL:
		return "an http(s) URL such as `https://auth.example.com/check`"
	case validatev1.Format_URI_PATH:
		return "a path starting with `/`"
	case validatev1.Format_REGEX:
		return "a valid regular expression"
	case validatev1.Format_HEADER_NAME:
		return "an HTTP header name"
	case validatev1.Format_ID:
		return "an id of 1-64 characters `[A-Za-z0-9._-]`"
	case validatev1.Format_PEM:
		return "PEM text (`-----BEGIN ...-----`)"
	}
	return "a valid value"
}

// parseDuration reads a proto-JSON duration ("1.5s") into nanoseconds.
func parseDuration(s string) (int64, bool) {
	body, ok := strings.CutSuffix(s, "s")
	if !ok {
		return 0, false
	}
	neg := strings.HasPrefix(body, "-")
	body = strings.TrimPrefix(body, "-")
	secs, frac, dotted := strings.Cut(body, ".")
	if secs == "" || (dotted && frac == "") || len(frac) > 9 {
		return 0, false
	}
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil || sec > 315576000000 {
		return 0, false
	}
	var nanos int64
	if frac != "" {
		n, err := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
		if err != nil {
			return 0, false
		}
		nanos = n
	}
	total := sec*1e9 + nanos
	if neg {
		total = -total
	}
	return total, true
}
