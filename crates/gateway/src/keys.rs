//! The API keys a gateway accepts: `--api-keys` (bearer tokens, usable from anywhere, at
//! `--rate-limit`) and `--api-keys-file` (named keys, each with optional allowed origins and
//! its own rate limit). Both may be given together: the keys are their union.
//!
//! The file is TOML, one `[[key]]` table per key:
//!
//! ```toml
//! [[key]]
//! name = "website"                    # for people and logs; unique
//! key = "pk_4f9c..."                  # the secret itself; unique across both sources
//! allowed_origins = ["https://shop.example.com"]   # optional; see below
//! rate_limit = 50                     # optional: events/s, 0 = no limit for this key
//! rate_limit_burst = 100              # optional: bucket size (default: one second's worth)
//! ```
//!
//! Invariants: no two keys share a secret or a name; a key with `allowed_origins` is refused
//! (403 `origin_not_allowed`) on a request whose `Origin` header is not one of them. A request
//! without `Origin` is not a browser's (browsers always send it on cross-origin requests and
//! pages cannot remove it), so it is accepted: `allowed_origins` keeps other sites' pages from
//! using a public write key, it does not make the key a secret. A key's origins must all be in
//! `--cors-allow-origins`: otherwise browsers there could never use it, and the gateway refuses
//! to start.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::{auth::Client, config::ApiKey, origin::AllowedOrigins, rate_limit::Limit};

/// One key: who it is, from where it may be used, how fast.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub name: String,
    pub secret: ApiKey,
    /// `None`: from any origin `--cors-allow-origins` allows (and from non-browsers).
    pub allowed_origins: Option<AllowedOrigins>,
    /// The rate limit in force for this key (`None`: unlimited).
    pub limit: Option<Limit>,
}

/// Every key, in a fixed order: `--api-keys` first (named `key-0`, `key-1`, ...), then the file's.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    entries: Vec<KeyEntry>,
    /// `--rate-limit`: for keys that set none, and for everyone when there are no keys.
    default_limit: Option<Limit>,
}

impl Keys {
    /// Builds the table. `file` entries are from [`load_file`]; their limits not set fall back
    /// to `default_limit`. Errors when a secret or a name is used twice.
    pub fn new(plain: &[ApiKey], file: Vec<FileKey>, default_limit: Option<Limit>) -> Result<Self, String> {
        let mut entries: Vec<KeyEntry> = plain
            .iter()
            .enumerate()
            .map(|(i, secret)| KeyEntry {
                name: format!("key-{i}"),
                secret: secret.clone(),
                allowed_origins: None,
                limit: default_limit,
            })
            .collect();
        for key in file {
            let limit = match key.rate {
                Some(own) => own,
                None => default_limit,
            };
            entries.push(KeyEntry { name: key.name, secret: key.secret, allowed_origins: key.allowed_origins, limit });
        }
        let mut names = HashSet::new();
        let mut secrets = HashSet::new();
        for entry in &entries {
            if !names.insert(entry.name.as_str()) {
                return Err(format!("API key name {:?} is used twice; give every key its own name", entry.name));
            }
            if !secrets.insert(entry.secret.0.as_str()) {
                return Err(format!(
                    "the key of {:?} is also another key's (in --api-keys or --api-keys-file); give every key its own secret",
                    entry.name
                ));
            }
        }
        Ok(Self { entries, default_limit })
    }

    /// No keys: writes are open, as one anonymous client.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    pub fn get(&self, client: Client) -> Option<&KeyEntry> {
        match client {
            Client::Anonymous => None,
            Client::Key(i) => self.entries.get(i),
        }
    }

    /// The rate limit a client draws from (`None`: unlimited).
    pub fn limit(&self, client: Client) -> Option<Limit> {
        match self.get(client) {
            Some(entry) => entry.limit,
            None => self.default_limit,
        }
    }

    /// Whether any client has a rate limit.
    pub fn any_limit(&self) -> bool {
        self.default_limit.is_some() || self.entries.iter().any(|e| e.limit.is_some())
    }

    /// Checks that every key's origins are allowed by `--cors-allow-origins` (`None`: unset, no
    /// browser may post).
    pub fn check_origins(&self, cors: Option<&AllowedOrigins>) -> Result<(), String> {
        for entry in &self.entries {
            let Some(mine) = &entry.allowed_origins else { continue };
            let Some(cors) = cors else {
                return Err(format!(
                    "--api-keys-file: key {:?} has allowed_origins but --cors-allow-origins is not set, so no browser may post; set --cors-allow-origins to (at least) those origins",
                    entry.name
                ));
            };
            if let Err(origin) = mine.within(cors) {
                return Err(format!(
                    "--api-keys-file: key {:?} allows {origin}, which --cors-allow-origins does not: browsers there could never use it; add the origin to --cors-allow-origins",
                    entry.name
                ));
            }
        }
        Ok(())
    }
}

/// One key as read from the file, validated.
#[derive(Debug, Clone)]
pub struct FileKey {
    pub name: String,
    pub secret: ApiKey,
    pub allowed_origins: Option<AllowedOrigins>,
    /// `None`: not set, the gateway's `--rate-limit` applies; `Some(None)`: `rate_limit = 0`.
    pub rate: Option<Option<Limit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    key: Vec<RawKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: Option<String>,
    key: Option<String>,
    allowed_origins: Option<Vec<String>>,
    rate_limit: Option<Number>,
    rate_limit_burst: Option<Number>,
}

/// TOML has integers and floats; a rate may be written either way.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    fn get(self) -> f64 {
        match self {
            Self::Int(i) => i as f64,
            Self::Float(f) => f,
        }
    }
}

/// Reads and checks `--api-keys-file`. The error names the file and lists every problem in it.
pub fn load_file(path: &Path) -> Result<Vec<FileKey>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--api-keys-file {}: cannot be read: {e}", path.display()))?;
    parse(&text).map_err(|problems| format!("--api-keys-file {}: {}", path.display(), problems.join("; ")))
}

/// Parses the file's text: the keys, or every problem found.
pub fn parse(text: &str) -> Result<Vec<FileKey>, Vec<String>> {
    let raw: RawFile = toml::from_str(text).map_err(|e| vec![format!("invalid TOML: {}", e.to_string().trim())])?;
    if raw.key.is_empty() {
        return Err(vec!["no keys: add one [[key]] table per key, with a name and a key".to_owned()]);
    }
    let mut problems = Vec::new();
    let mut keys = Vec::new();
    for (i, key) in raw.key.into_iter().enumerate() {
        let label = match key.name.as_deref() {
            Some(name) if !name.trim().is_empty() => format!("key {name:?}"),
            _ => format!("[[key]] number {}", i + 1),
        };
        let mut report = |what: String| problems.push(format!("{label}: {what}"));
        let name = key.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        if name.is_none() {
            report("has no name; add name = \"...\"".to_owned());
        }
        let secret = key.key.as_deref().map(str::parse::<ApiKey>);
        let secret = match secret {
            Some(Ok(secret)) => Some(secret),
            Some(Err(_)) | None => {
                report("has no key; add key = \"...\" (the secret clients send)".to_owned());
                None
            }
        };
        let allowed_origins = match key.allowed_origins {
            None => None,
            Some(list) => match AllowedOrigins::parse(&list, "allowed_origins") {
                Ok(origins) => Some(origins),
                Err(e) => {
                    report(e);
                    None
                }
            },
        };
        let rate = match (key.rate_limit.map(Number::get), key.rate_limit_burst.map(Number::get)) {
            (None, None) => None,
            (None, Some(_)) => {
                report("rate_limit_burst needs rate_limit".to_owned());
                None
            }
            (Some(rate), burst) => match Limit::new(rate, burst) {
                Ok(limit) => Some(limit),
                Err(e) => {
                    report(e);
                    None
                }
            },
        };
        if let (Some(name), Some(secret)) = (name, secret) {
            keys.push(FileKey { name, secret, allowed_origins, rate });
        }
    }
    if problems.is_empty() {
        Ok(keys)
    } else {
        Err(problems)
    }
}

/// `--api-keys-file`, if given.
pub fn load(path: Option<&PathBuf>) -> Result<Vec<FileKey>, String> {
    path.map_or(Ok(Vec::new()), |p| load_file(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: f64, burst: f64) -> Limit {
        Limit::new(rate, Some(burst)).expect("limit").expect("on")
    }

    #[test]
    fn a_full_file_is_read() {
        let keys = parse(
            r#"
            [[key]]
            name = "website"
            key = "pk_web"
            allowed_origins = ["https://Shop.example.com/", "http://localhost:3000"]
            rate_limit = 50
            rate_limit_burst = 100.5

            [[key]]
            name = "backend"
            key = "sk_backend"
            rate_limit = 0

            [[key]]
            name = "batch"
            key = "sk_batch"
            "#,
        )
        .expect("valid");
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0].name, "website");
        assert_eq!(keys[0].secret.0, "pk_web");
        let origins = keys[0].allowed_origins.as_ref().expect("origins");
        assert!(origins.allows(b"https://shop.example.com") && !origins.allows(b"https://other.example"));
        assert_eq!(keys[0].rate, Some(Some(limit(50.0, 100.5))));
        assert_eq!(keys[1].rate, Some(None), "0: no limit for this key");
        assert_eq!(keys[2].rate, None, "unset: the gateway's");
        assert!(keys[2].allowed_origins.is_none());

        let default = Some(limit(5.0, 5.0));
        let table = Keys::new(&[ApiKey("plain".into())], keys, default).expect("table");
        assert_eq!(table.len(), 4);
        assert_eq!(table.entries()[0].name, "key-0");
        assert_eq!(table.limit(Client::Key(0)), default, "--api-keys keys: --rate-limit");
        assert_eq!(table.limit(Client::Key(1)), Some(limit(50.0, 100.5)));
        assert_eq!(table.limit(Client::Key(2)), None);
        assert_eq!(table.limit(Client::Key(3)), default);
        assert_eq!(table.limit(Client::Anonymous), default);
        assert!(table.any_limit());
    }

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let problems = parse(
            r#"
            [[key]]
            key = "k1"

            [[key]]
            name = "web"
            allowed_origins = ["shop.example.com"]
            rate_limit = -1

            [[key]]
            name = "burst"
            key = "k3"
            rate_limit_burst = 10
            "#,
        )
        .expect_err("invalid");
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert_eq!(problems[0], "[[key]] number 1: has no name; add name = \"...\"");
        assert!(problems[1].starts_with("key \"web\": has no key"), "{}", problems[1]);
        assert!(
            problems[2].starts_with("key \"web\": allowed_origins: origin \"shop.example.com\""),
            "{}",
            problems[2]
        );
        assert!(problems[3].starts_with("key \"web\": rate_limit must be"), "{}", problems[3]);
        assert_eq!(problems[4], "key \"burst\": rate_limit_burst needs rate_limit");
    }

    #[test]
    fn syntax_unknown_fields_and_empty_files_are_refused() {
        let err = parse("[[key]]\nname = \"a\"\nkey = \"b\"\norigins = []\n").expect_err("unknown field");
        assert!(err[0].contains("unknown field `origins`"), "{err:?}");
        let err = parse("[[key]\n").expect_err("syntax");
        assert!(err[0].starts_with("invalid TOML"), "{err:?}");
        assert_eq!(
            parse("").expect_err("empty"),
            vec!["no keys: add one [[key]] table per key, with a name and a key"]
        );
        let err = parse("[[key]]\nname = \"a\"\nkey = \"b\"\nallowed_origins = []\n").expect_err("empty list");
        assert!(err[0].contains("empty origin"), "{err:?}");
    }

    #[test]
    fn names_and_secrets_are_unique_across_both_sources() {
        let file = |name: &str, key: &str| FileKey {
            name: name.into(),
            secret: ApiKey(key.into()),
            allowed_origins: None,
            rate: None,
        };
        let err = Keys::new(&[ApiKey("same".into())], vec![file("web", "same")], None).expect_err("dup secret");
        assert!(err.contains("\"web\"") && err.contains("own secret"), "{err}");
        assert!(!err.contains("same"), "the secret is never printed: {err}");
        let err = Keys::new(&[], vec![file("web", "a"), file("web", "b")], None).expect_err("dup name");
        assert!(err.contains("used twice"), "{err}");
        let err = Keys::new(&[ApiKey("x".into())], vec![file("key-0", "b")], None).expect_err("clash with a plain key");
        assert!(err.contains("\"key-0\""), "{err}");
        assert!(!Keys::new(&[], vec![], None).expect("empty").any_limit());
    }

    #[test]
    fn a_keys_origins_must_be_allowed_by_cors() {
        let web = FileKey {
            name: "web".into(),
            secret: ApiKey("k".into()),
            allowed_origins: Some(AllowedOrigins::parse(&["https://a.example"], "x").expect("origins")),
            rate: None,
        };
        let keys = Keys::new(&[], vec![web], None).expect("keys");
        let err = keys.check_origins(None).expect_err("cors unset");
        assert!(err.contains("--cors-allow-origins is not set"), "{err}");
        let other = AllowedOrigins::parse(&["https://b.example"], "x").expect("cors");
        let err = keys.check_origins(Some(&other)).expect_err("outside");
        assert_eq!(
            err,
            "--api-keys-file: key \"web\" allows https://a.example, which --cors-allow-origins does not: browsers there could never use it; add the origin to --cors-allow-origins"
        );
        assert!(keys.check_origins(Some(&AllowedOrigins::Any)).is_ok());
    }
}
