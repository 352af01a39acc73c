//! Keeping secrets out of logs.

/// A connection URL with its password replaced by `***`, safe to log.
///
/// The password is hidden whatever it contains, `/`, `?`, `#`, `@` and `:` included (users
/// paste passwords unencoded): the userinfo runs from the scheme to the last `@` of the URL,
/// and the password from its first `:`. With a password and an `@` in the query too, this
/// hides more than the password (up to that `@`), never less.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host_and_tail) = (&rest[..at], &rest[at + 1..]);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host_and_tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn hides_only_the_password() {
        assert_eq!(
            redact_url("postgres://sluice:s3cr@t@db:5432/sluice?sslmode=require"),
            "postgres://sluice:***@db:5432/sluice?sslmode=require"
        );
        assert_eq!(redact_url("postgres://db/sluice"), "postgres://db/sluice");
        assert_eq!(redact_url("postgres://user@db/x"), "postgres://user@db/x");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn hides_passwords_with_any_character() {
        for password in ["pa/ss", "pa?ss", "pa#ss", "a/b?c#d@e:f", "/", "?", "@", ":", "//x?@", "p@ss/word?x=1", ""] {
            let url = format!("postgres://sluice:{password}@db.internal:5432/sluice?sslmode=require");
            let redacted = redact_url(&url);
            assert_eq!(redacted, "postgres://sluice:***@db.internal:5432/sluice?sslmode=require", "{password:?}");
        }
        assert_eq!(redact_url("postgres://sluice:pa/ss@db"), "postgres://sluice:***@db");
        assert_eq!(redact_url("postgres://sluice:pa?ss@db"), "postgres://sluice:***@db");
    }

    #[test]
    fn an_at_sign_elsewhere_is_not_a_password() {
        assert_eq!(
            redact_url("postgres://db/sluice?application_name=a@b"),
            "postgres://db/sluice?application_name=a@b"
        );
        assert_eq!(
            redact_url("postgres://u@db/sluice?application_name=a@b"),
            "postgres://u@db/sluice?application_name=a@b"
        );
        assert_eq!(
            redact_url("postgres://u:p@db/sluice?application_name=a@b"),
            "postgres://u:***@b",
            "hides more than the password rather than less"
        );
    }
}
