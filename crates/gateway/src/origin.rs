//! Web origins as configured (`--cors-allow-origins`, a key's `allowed_origins`) and matching a
//! request's `Origin` header against them.
//!
//! Invariant: a configured origin is stored in the form browsers serialize an origin in
//! (`scheme://host[:port]`, scheme and host lowercase, no default port, no path), so matching a
//! request is one exact comparison of its lowercased header. A browser never sends anything
//! else; a header that is not an origin at all matches nothing but `*`.

use std::{collections::BTreeSet, fmt, str::FromStr};

/// One configured origin, normalized (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin(String);

impl Origin {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Origin {
    type Err = String;

    /// `https://shop.example.com`, `http://localhost:3000`; a trailing `/` is dropped. Refused:
    /// a path, query or user part, a missing scheme or host, non-ASCII hosts (write them in
    /// punycode, as browsers send them), and `null` (any sandboxed page sends it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw = s.trim();
        let bad = |why: &str| format!("origin {raw:?} {why}");
        if raw.eq_ignore_ascii_case("null") {
            return Err(bad(
                "cannot be allowed by name: every sandboxed frame and file:// page sends it; use * to allow any origin",
            ));
        }
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| bad("is not an origin: write scheme://host[:port], e.g. https://shop.example.com"))?;
        let scheme = scheme.to_ascii_lowercase();
        let valid_scheme = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !valid_scheme {
            return Err(bad("has no valid scheme: write scheme://host[:port], e.g. https://shop.example.com"));
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(bad("has a path, query or fragment: an origin is only scheme://host[:port]"));
        }
        if authority.contains('@') {
            return Err(bad("has a user part: an origin is only scheme://host[:port]"));
        }
        if !authority.is_ascii() {
            return Err(bad("has a non-ASCII host: write it in its punycode (xn--) form, as browsers send it"));
        }
        let authority = authority.to_ascii_lowercase();
        let (host, port) = split_port(&authority).map_err(&bad)?;
        if !host.starts_with('[') && host.contains(':') {
            return Err(bad("has an IPv6 host without brackets: write it as [::1]"));
        }
        if host.is_empty() || host.contains(|c: char| c.is_ascii_whitespace() || c == '*') {
            return Err(bad("has no valid host (wildcards like *.example.com are not supported; list each origin)"));
        }
        let default_port = match scheme.as_str() {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            _ => None,
        };
        let origin = match port {
            Some(p) if Some(p) != default_port => format!("{scheme}://{host}:{p}"),
            _ => format!("{scheme}://{host}"),
        };
        Ok(Self(origin))
    }
}

/// `host[:port]` (the host may be a bracketed IPv6 address) into its parts.
fn split_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    let port_at = if authority.starts_with('[') {
        let end = authority.find(']').ok_or("has an unclosed [ in its host")?;
        match &authority[end + 1..] {
            "" => None,
            rest if rest.starts_with(':') => Some(end + 1),
            _ => return Err("has text after its IPv6 host"),
        }
    } else {
        authority.rfind(':')
    };
    let Some(at) = port_at else { return Ok((authority, None)) };
    let port = authority[at + 1..].parse::<u16>().map_err(|_| "has an invalid port: it must be 0 to 65535")?;
    Ok((&authority[..at], Some(port)))
}

/// Which origins may send requests: every one, or those listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: any origin, `null` included.
    Any,
    List(BTreeSet<Origin>),
}

impl AllowedOrigins {
    /// From configured entries: `*` alone, or origins. `what` names the setting in errors.
    pub fn parse<S: AsRef<str>>(entries: &[S], what: &str) -> Result<Self, String> {
        let entries: Vec<&str> = entries.iter().map(|e| e.as_ref().trim()).collect();
        if entries.contains(&"*") {
            if entries.len() > 1 {
                return Err(format!("{what}: `*` allows every origin; list origins or give `*` alone"));
            }
            return Ok(Self::Any);
        }
        if entries.is_empty() || entries.iter().any(|e| e.is_empty()) {
            return Err(format!(
                "{what}: an empty origin; list origins as scheme://host[:port], comma-separated, or `*`"
            ));
        }
        let origins = entries.iter().map(|e| e.parse()).collect::<Result<_, String>>();
        origins.map(Self::List).map_err(|e| format!("{what}: {e}"))
    }

    /// Whether a request's `Origin` header value is allowed.
    pub fn allows(&self, header: &[u8]) -> bool {
        match self {
            Self::Any => true,
            Self::List(origins) => std::str::from_utf8(header).is_ok_and(|value| {
                let value = value.trim().to_ascii_lowercase();
                origins.iter().any(|o| o.0 == value)
            }),
        }
    }

    /// Every origin `self` allows is allowed by `outer` too.
    pub fn within(&self, outer: &AllowedOrigins) -> Result<(), Origin> {
        match (self, outer) {
            (_, Self::Any) => Ok(()),
            (Self::Any, Self::List(_)) => Err(Origin("*".to_owned())),
            (Self::List(mine), Self::List(theirs)) => match mine.difference(theirs).next() {
                Some(missing) => Err(missing.clone()),
                None => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn origin(s: &str) -> Result<String, String> {
        s.parse::<Origin>().map(|o| o.0)
    }

    #[test]
    fn configured_origins_are_normalized_as_browsers_serialize_them() {
        assert_eq!(origin("https://Shop.Example.com").as_deref(), Ok("https://shop.example.com"));
        assert_eq!(origin(" HTTPS://shop.example.com/ ").as_deref(), Ok("https://shop.example.com"));
        assert_eq!(origin("https://shop.example.com:443").as_deref(), Ok("https://shop.example.com"));
        assert_eq!(origin("http://localhost:80").as_deref(), Ok("http://localhost"));
        assert_eq!(origin("http://localhost:3000").as_deref(), Ok("http://localhost:3000"));
        assert_eq!(origin("https://example.com:80").as_deref(), Ok("https://example.com:80"));
        assert_eq!(origin("http://[::1]:8080").as_deref(), Ok("http://[::1]:8080"));
        assert_eq!(origin("http://[::1]").as_deref(), Ok("http://[::1]"));
        assert_eq!(origin("chrome-extension://abcdef").as_deref(), Ok("chrome-extension://abcdef"));
    }

    #[test]
    fn what_is_not_an_origin_is_refused_with_what_to_write() {
        for (bad, says) in [
            ("shop.example.com", "write scheme://host[:port]"),
            ("https://shop.example.com/path", "path, query or fragment"),
            ("https://shop.example.com?x=1", "path, query or fragment"),
            ("https://user@shop.example.com", "user part"),
            ("https://", "no valid host"),
            ("https://*.example.com", "wildcards"),
            ("https://shop.example.com:99999", "invalid port"),
            ("https://shop.example.com:", "invalid port"),
            ("1http://x", "no valid scheme"),
            ("https://bücher.example", "punycode"),
            ("null", "sandboxed"),
            ("http://[::1", "unclosed"),
            ("http://::1", "without brackets"),
            ("http://[::1]x", "after its IPv6 host"),
        ] {
            let err = origin(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn lists_match_exactly_and_star_matches_everything() {
        let list = AllowedOrigins::parse(&["https://a.example", "http://localhost:3000"], "--x").expect("list");
        assert!(list.allows(b"https://a.example"));
        assert!(list.allows(b"HTTPS://A.example"));
        assert!(list.allows(b"http://localhost:3000"));
        assert!(!list.allows(b"http://a.example"), "another scheme");
        assert!(!list.allows(b"https://a.example:8443"), "another port");
        assert!(!list.allows(b"https://b.a.example"), "a subdomain");
        assert!(!list.allows(b"https://a.example.evil"), "a suffix");
        assert!(!list.allows(b"null"));
        assert!(!list.allows(b"\xff"));
        let any = AllowedOrigins::parse(&["*"], "--x").expect("any");
        assert!(any.allows(b"null") && any.allows(b"https://anything"));
    }

    #[test]
    fn star_stands_alone_and_empty_entries_are_refused() {
        let err = AllowedOrigins::parse(&["*", "https://a.example"], "--cors-allow-origins").expect_err("mixed");
        assert_eq!(err, "--cors-allow-origins: `*` allows every origin; list origins or give `*` alone");
        assert!(AllowedOrigins::parse(&["https://a.example", ""], "--x").expect_err("empty").contains("empty origin"));
        assert!(AllowedOrigins::parse::<&str>(&[], "--x").is_err());
        let err = AllowedOrigins::parse(&["https://a.example/x"], "key web").expect_err("bad");
        assert!(err.starts_with("key web: origin \"https://a.example/x\""), "{err}");
    }

    #[test]
    fn within_names_the_first_origin_outside() {
        let outer = AllowedOrigins::parse(&["https://a.example", "https://b.example"], "x").expect("outer");
        let inner = AllowedOrigins::parse(&["https://b.example"], "x").expect("inner");
        let other = AllowedOrigins::parse(&["https://b.example", "https://c.example"], "x").expect("other");
        assert_eq!(inner.within(&outer), Ok(()));
        assert_eq!(other.within(&outer).map_err(|o| o.to_string()), Err("https://c.example".to_owned()));
        assert!(AllowedOrigins::Any.within(&outer).is_err());
        assert_eq!(other.within(&AllowedOrigins::Any), Ok(()));
    }

    proptest! {
        /// Whatever a configured origin normalizes to is what a browser sends for it.
        #[test]
        fn a_normalized_origin_matches_its_own_serialization(
            scheme in "(http|https|HTTP|Https)",
            host in "[a-zA-Z0-9][a-zA-Z0-9.-]{0,20}",
            port in proptest::option::of(1u16..),
        ) {
            let written = match port { Some(p) => format!("{scheme}://{host}:{p}"), None => format!("{scheme}://{host}") };
            let parsed: Origin = written.parse().map_err(TestCaseError::fail)?;
            let list = AllowedOrigins::List([parsed.clone()].into());
            prop_assert!(list.allows(parsed.as_str().as_bytes()));
            prop_assert!(list.allows(written.as_bytes()) || port == Some(80) || port == Some(443));
            prop_assert_eq!(parsed.as_str().parse::<Origin>().map_err(TestCaseError::fail)?, parsed.clone());
        }

        #[test]
        fn no_input_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<Origin>();
            let _ = AllowedOrigins::parse(&[s.as_str()], "x");
        }
    }
}
