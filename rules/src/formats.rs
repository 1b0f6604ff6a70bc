//! The well-known string formats and proto-JSON durations.
//!
//! Each format is one regular expression, written in the common subset of the
//! Rust `regex` and ECMAScript dialects, so that the loader and the generated
//! JSON Schema (`pattern`) accept exactly the same strings. Only `REGEX`
//! (the value must compile) has no pattern: the schema says `format: regex`.

use std::sync::OnceLock;

use regex::Regex;

const LABEL: &str = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const OCTET: &str = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
const PORT: &str = "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})";

fn hostname() -> String {
    format!("{LABEL}(?:\\.{LABEL})*")
}

fn ipv4() -> String {
    format!("{OCTET}(?:\\.{OCTET}){{3}}")
}

fn ipv6() -> String {
    let h = "[0-9A-Fa-f]{1,4}";
    let v4 = ipv4();
    [
        format!("(?:{h}:){{7}}{h}"),
        format!("(?:{h}:){{1,7}}:"),
        format!("(?:{h}:){{1,6}}:{h}"),
        format!("(?:{h}:){{1,5}}(?::{h}){{1,2}}"),
        format!("(?:{h}:){{1,4}}(?::{h}){{1,3}}"),
        format!("(?:{h}:){{1,3}}(?::{h}){{1,4}}"),
        format!("(?:{h}:){{1,2}}(?::{h}){{1,5}}"),
        format!("{h}:(?::{h}){{1,6}}"),
        format!(":(?:(?::{h}){{1,7}}|:)"),
        format!("::(?:[Ff]{{4}}:)?{v4}"),
        format!("(?:{h}:){{1,4}}:{v4}"),
    ]
    .map(|alt| format!("(?:{alt})"))
    .join("|")
}

/// The anchored pattern of a format (by its enum number in
/// `pingora_config.validate.v1.Format`), or `None` for formats that are not a
/// pattern (`REGEX`) and for `FORMAT_UNSPECIFIED`.
pub fn pattern(format: i32) -> Option<String> {
    let p = match format {
        // HOSTNAME
        1 => hostname(),
        // HOST_PATTERN
        2 => format!("(?:\\*\\.)?{}", hostname()),
        // HOST
        3 => format!("{}|{}|{}", hostname(), ipv4(), ipv6()),
        // IP
        4 => format!("{}|{}", ipv4(), ipv6()),
        // CIDR
        5 => format!("{}(?:/(?:3[0-2]|[12]?[0-9]))?|(?:{})(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?", ipv4(), ipv6()),
        // SOCKET_ADDRESS
        6 => format!("(?:{}|{}|\\[(?:{})\\]):{PORT}", hostname(), ipv4(), ipv6()),
        // URL
        7 => "https?://[^\\s/?#@]+(?:[/?#]\\S*)?".to_owned(),
        // URI_PATH
        8 => "/\\S*".to_owned(),
        // HEADER_NAME
        10 => "[!#$%&'*+.^_`|~0-9A-Za-z-]+".to_owned(),
        // ID
        11 => "[A-Za-z0-9._-]{1,64}".to_owned(),
        // PEM
        12 => "\\s*-----BEGIN [A-Z0-9 ]+-----[\\s\\S]*-----END [A-Z0-9 ]+-----\\s*".to_owned(),
        _ => return None,
    };
    Some(format!("^(?:{p})$"))
}

/// The maximum length a format allows, beyond its pattern.
pub fn max_len(format: i32) -> Option<u32> {
    match format {
        1..=3 => Some(253),
        _ => None,
    }
}

/// What a format is called in error messages.
pub fn describe(format: i32) -> &'static str {
    match format {
        1 => "a hostname such as `api.example.com`",
        2 => "a hostname or wildcard such as `*.example.com`",
        3 => "a hostname or IP address",
        4 => "an IPv4 or IPv6 address",
        5 => "an IP address or CIDR block such as `10.0.0.0/8`",
        6 => "an address `host:port` such as `127.0.0.1:9080`",
        7 => "an http(s) URL such as `https://auth.example.com/check`",
        8 => "a path starting with `/`",
        9 => "a valid regular expression",
        10 => "an HTTP header name",
        11 => "an id of 1-64 characters `[A-Za-z0-9._-]`",
        12 => "PEM text (`-----BEGIN ...-----`)",
        _ => "a valid value",
    }
}

/// Whether `value` has the format.
pub fn matches(format: i32, value: &str) -> bool {
    static COMPILED: OnceLock<Vec<Option<Regex>>> = OnceLock::new();
    let compiled = COMPILED.get_or_init(|| {
        (0..=12).map(|f| pattern(f).map(|p| Regex::new(&p).expect("format patterns compile"))).collect()
    });
    if format == 9 {
        return Regex::new(value).is_ok();
    }
    if let Some(max) = max_len(format)
        && value.chars().count() > max as usize
    {
        return false;
    }
    match compiled.get(format as usize) {
        Some(Some(re)) => re.is_match(value),
        _ => true,
    }
}

/// The proto-JSON form of a `google.protobuf.Duration`: seconds with up to
/// nine fractional digits and an `s` suffix, for example `1.5s` or `0.010s`.
pub const DURATION_PATTERN: &str = "^-?[0-9]+(?:\\.[0-9]{1,9})?s$";

/// Parses a proto-JSON duration into nanoseconds.
pub fn parse_duration(s: &str) -> Option<i128> {
    let body = s.strip_suffix('s')?;
    let (neg, body) = match body.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, body),
    };
    let (secs, frac) = match body.split_once('.') {
        Some((a, b)) => (a, b),
        None => (body, ""),
    };
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (body.contains('.') && frac.is_empty())
    {
        return None;
    }
    let secs: i128 = secs.parse().ok()?;
    // proto3 limits a Duration to about ±10,000 years.
    if secs > 315_576_000_000 {
        return None;
    }
    let nanos: i128 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
    let total = secs * 1_000_000_000 + nanos;
    Some(if neg { -total } else { total })
}

/// The proto-JSON form of a duration written with another unit (`500ms`,
/// `2m`, `1h`), to suggest in an error message.
pub fn suggest_duration(s: &str) -> Option<String> {
    let units = [
        ("ms", 0.001),
        ("us", 0.000_001),
        ("µs", 0.000_001),
        ("ns", 0.000_000_001),
        ("m", 60.0),
        ("h", 3600.0),
        ("sec", 1.0),
        ("", 1.0),
    ];
    for (unit, factor) in units {
        if let Some(n) = s.trim().strip_suffix(unit).and_then(|n| n.trim().parse::<f64>().ok()) {
            let secs = n * factor;
            let text = format!("{secs:.9}");
            let text = text.trim_end_matches('0').trim_end_matches('.');
            return Some(format!("{text}s"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_accept_what_they_say() {
        assert!(matches(1, "api.example.com"));
        assert!(!matches(1, "*.example.com"));
        assert!(matches(2, "*.example.com"));
        assert!(matches(3, "::1"));
        assert!(matches(4, "10.1.2.3"));
        assert!(!matches(4, "10.1.2.256"));
        assert!(matches(5, "10.0.0.0/8"));
        assert!(matches(5, "2001:db8::/32"));
        assert!(!matches(5, "10.0.0.0/33"));
        assert!(matches(6, "0.0.0.0:9080"));
        assert!(matches(6, "[::1]:9180"));
        assert!(!matches(6, "localhost:70000"));
        assert!(matches(7, "https://auth.example.com/check?x=1"));
        assert!(!matches(7, "ftp://x"));
        assert!(matches(9, "^/api/(.*)$"));
        assert!(!matches(9, "("));
        assert!(matches(10, "X-Request-Id"));
        assert!(!matches(10, "bad header"));
        assert!(matches(11, "route-1"));
        assert!(!matches(11, "route 1"));
    }

    #[test]
    fn durations_parse_as_proto_json() {
        assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration("0.000000001s"), Some(1));
        assert_eq!(parse_duration("-2s"), Some(-2_000_000_000));
        assert_eq!(parse_duration("1.s"), None);
        assert_eq!(parse_duration("500ms"), None);
        assert_eq!(parse_duration("1.5"), None);
    }

    #[test]
    fn other_units_get_a_suggestion() {
        assert_eq!(suggest_duration("500ms").as_deref(), Some("0.5s"));
        assert_eq!(suggest_duration("2m").as_deref(), Some("120s"));
        assert_eq!(suggest_duration("10").as_deref(), Some("10s"));
        assert_eq!(suggest_duration("soon"), None);
    }
}
