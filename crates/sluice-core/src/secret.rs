//! Keeping secrets out of logs.

/// A connection URL with its password replaced by `***`, safe to log.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
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
}
