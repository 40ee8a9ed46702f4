//! `rewrite-target`: the upstream path is replaced by the target with `$1`…`$9` taken
//! from the route regex's capture groups (ingress-nginx semantics since 0.22: nothing of
//! the original path is carried over implicitly). The original query string is kept and
//! appended after any query the target sets, unless the target ends with `?` (nginx's
//! rule). Never fails: a missing capture expands to nothing.

/// Expands `$1`…`$9` in `target`; `$1` is `captures[0]`. `$` followed by anything else is
/// kept literally.
pub fn expand(target: &str, captures: &[String]) -> String {
    let mut out = String::with_capacity(target.len() + 32);
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$'
            && let Some(d) = chars.peek().and_then(|d| d.to_digit(10))
            && d >= 1
        {
            chars.next();
            if let Some(cap) = captures.get(d as usize - 1) {
                out.push_str(cap);
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The upstream path-and-query for a rewritten request.
pub fn rewrite_path_and_query(
    target: &str,
    captures: &[String],
    original_query: Option<&str>,
) -> String {
    let expanded = expand(target, captures);
    let mut out = String::with_capacity(expanded.len() + original_query.map_or(0, str::len) + 2);
    if !expanded.starts_with('/') {
        out.push('/');
    }
    let drop_original = expanded.ends_with('?');
    let expanded = expanded.strip_suffix('?').unwrap_or(&expanded);
    out.push_str(expanded);
    let original = original_query.filter(|q| !q.is_empty() && !drop_original);
    if let Some(q) = original {
        out.push(if expanded.contains('?') { '&' } else { '?' });
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ingress_nginx_documented_example() {
        // path /something(/|$)(.*) with rewrite-target /$2
        assert_eq!(rewrite_path_and_query("/$2", &caps(&["", ""]), None), "/");
        assert_eq!(rewrite_path_and_query("/$2", &caps(&["/", ""]), None), "/");
        assert_eq!(
            rewrite_path_and_query("/$2", &caps(&["/", "new"]), None),
            "/new"
        );
        assert_eq!(
            rewrite_path_and_query("/$2", &caps(&["/", "new"]), Some("a=1")),
            "/new?a=1"
        );
    }

    #[test]
    fn literals_missing_captures_and_queries() {
        assert_eq!(expand("/x/$1/$3/$", &caps(&["a"])), "/x/a//$");
        assert_eq!(expand("/$0$a", &caps(&["a"])), "/$0$a");
        assert_eq!(rewrite_path_and_query("app", &[], None), "/app");
        assert_eq!(rewrite_path_and_query("/", &[], Some("q=1")), "/?q=1");
        assert_eq!(
            rewrite_path_and_query("/p?x=1", &[], Some("q=1")),
            "/p?x=1&q=1"
        );
        assert_eq!(rewrite_path_and_query("/p?", &[], Some("q=1")), "/p");
        assert_eq!(rewrite_path_and_query("/p", &[], Some("")), "/p");
    }
}
