//! The one place that splits an nginx variable reference (`$name` or `${name}`) off a
//! template, for every annotation that accepts variables (auth, hash-by).

/// `after` is what follows a `$`: returns the variable's name and the text after it.
/// The name may be empty (a `$` that starts no variable); callers decide what that means.
pub(crate) fn split_variable(after: &str) -> Result<(&str, &str), String> {
    match after.strip_prefix('{') {
        Some(braced) => match braced.find('}') {
            Some(end) => Ok((&braced[..end], &braced[end + 1..])),
            None => Err("unclosed ${".into()),
        },
        None => {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            Ok((&after[..end], &after[end..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_variable;

    #[test]
    fn plain_braced_and_broken() {
        assert_eq!(split_variable("host/x"), Ok(("host", "/x")));
        assert_eq!(split_variable("{http_x}y"), Ok(("http_x", "y")));
        assert_eq!(split_variable("/x"), Ok(("", "/x")));
        assert!(split_variable("{host").is_err());
    }
}
