//! RFC 6902 JSON Patch operations built as typed values and rendered once.
//!
//! The builder keeps a working copy of the object and applies each operation to it as it
//! goes, so a later operation sees the parents an earlier one created (two defaults under
//! a missing `resources` map become one `add` of the map, then one `add` into it) and a
//! rule can ask what the object looks like after the mutations before it. Operations only
//! ever add what is absent or replace a single member: a whole map that exists is never
//! re-added, which would wipe its other keys.
use serde_json::{Map, Value};

/// A JSON Pointer (RFC 6901) as unescaped tokens; escaping happens only when rendered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Pointer(Vec<String>);

impl Pointer {
    /// The whole document.
    pub fn root() -> Self {
        Pointer(Vec::new())
    }

    /// A pointer from unescaped tokens (`["metadata", "labels", "app.kubernetes.io/name"]`).
    pub fn from_tokens<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Pointer(tokens.into_iter().map(Into::into).collect())
    }

    /// This pointer with one more token.
    pub fn child(&self, token: impl Into<String>) -> Self {
        let mut p = self.clone();
        p.0.push(token.into());
        p
    }

    /// This pointer with one more array index.
    pub fn index(&self, i: usize) -> Self {
        self.child(i.to_string())
    }

    /// The parent pointer, or None at the root.
    pub fn parent(&self) -> Option<Pointer> {
        let (_, rest) = self.0.split_last()?;
        Some(Pointer(rest.to_vec()))
    }

    pub fn tokens(&self) -> &[String] {
        &self.0
    }

    /// RFC 6901 text: `~` becomes `~0` before `/` becomes `~1`, so `a/b~c` is `a~1b~0c`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for t in &self.0 {
            out.push('/');
            for c in t.chars() {
                match c {
                    '~' => out.push_str("~0"),
                    '/' => out.push_str("~1"),
                    c => out.push(c),
                }
            }
        }
        out
    }

    /// The value this pointer names in `doc`, if any.
    pub fn get<'v>(&self, doc: &'v Value) -> Option<&'v Value> {
        let mut cur = doc;
        for t in &self.0 {
            cur = match cur {
                Value::Object(m) => m.get(t)?,
                Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    fn get_mut<'v>(&self, doc: &'v mut Value) -> Option<&'v mut Value> {
        let mut cur = doc;
        for t in &self.0 {
            cur = match cur {
                Value::Object(m) => m.get_mut(t)?,
                Value::Array(a) => a.get_mut(t.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }
}

impl std::fmt::Display for Pointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

/// One JSON Patch operation.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchOp {
    Add { path: Pointer, value: Value },
    Replace { path: Pointer, value: Value },
    Remove { path: Pointer },
}

impl PatchOp {
    /// The RFC 6902 JSON form.
    pub fn to_json(&self) -> Value {
        let (op, path, value) = match self {
            PatchOp::Add { path, value } => ("add", path, Some(value)),
            PatchOp::Replace { path, value } => ("replace", path, Some(value)),
            PatchOp::Remove { path } => ("remove", path, None),
        };
        let mut m = Map::new();
        m.insert("op".into(), Value::String(op.into()));
        m.insert("path".into(), Value::String(path.render()));
        if let Some(v) = value {
            m.insert("value".into(), v.clone());
        }
        Value::Object(m)
    }
}

/// Renders operations as the JSON Patch document the API server expects.
pub fn render(ops: &[PatchOp]) -> Vec<u8> {
    let arr = Value::Array(ops.iter().map(PatchOp::to_json).collect());
    serde_json::to_vec(&arr).unwrap_or_else(|_| b"[]".to_vec())
}

/// Collects operations against a working copy of the object.
#[derive(Debug)]
pub struct PatchBuilder {
    doc: Value,
    ops: Vec<PatchOp>,
}

impl PatchBuilder {
    /// Starts from the object as the API server sent it.
    pub fn new(object: Value) -> Self {
        PatchBuilder {
            doc: object,
            ops: Vec::new(),
        }
    }

    /// The object with every operation so far applied.
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    pub fn get(&self, ptr: &Pointer) -> Option<&Value> {
        ptr.get(&self.doc)
    }

    pub fn ops(&self) -> &[PatchOp] {
        &self.ops
    }

    pub fn into_ops(self) -> Vec<PatchOp> {
        self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Sets `ptr` to `value` only when nothing (or null) is there, creating missing parent
    /// maps with a single `add` of the nearest missing one. Returns whether it changed.
    pub fn add_if_absent(&mut self, ptr: &Pointer, value: Value) -> bool {
        match ptr.get(&self.doc) {
            Some(Value::Null) | None => self.set(ptr, value),
            Some(_) => false,
        }
    }

    /// Sets `ptr` to `value` (replace when present, add otherwise, creating parents).
    /// Returns false when the value is already there or the path crosses a non-object.
    pub fn set(&mut self, ptr: &Pointer, value: Value) -> bool {
        if let Some(existing) = ptr.get(&self.doc) {
            if *existing == value {
                return false;
            }
            if let Some(slot) = ptr.get_mut(&mut self.doc) {
                *slot = value.clone();
                self.ops.push(PatchOp::Replace {
                    path: ptr.clone(),
                    value,
                });
                return true;
            }
            return false;
        }
        // Find the deepest existing ancestor; it must be an object (or the array that owns
        // an existing index) for an add to apply.
        let tokens = ptr.tokens();
        let mut depth = tokens.len();
        while depth > 0 {
            let anc = Pointer(tokens[..depth - 1].to_vec());
            match anc.get(&self.doc) {
                Some(Value::Object(_)) => break,
                Some(Value::Null) | None => depth -= 1,
                Some(_) => return false,
            }
        }
        if depth == 0 {
            return false;
        }
        // tokens[..depth] is the first missing pointer; wrap the rest into nested maps.
        let mut nested = value;
        for t in tokens[depth..].iter().rev() {
            let mut m = Map::new();
            m.insert(t.clone(), nested);
            nested = Value::Object(m);
        }
        let first_missing = Pointer(tokens[..depth].to_vec());
        let parent = Pointer(tokens[..depth - 1].to_vec());
        let key = tokens[depth - 1].clone();
        // A null member (`labels: null`) is overwritten by this add: RFC 6902 `add` on an
        // existing member replaces it, so the patch stays applicable.
        if let Some(Value::Object(m)) = parent.get_mut(&mut self.doc) {
            m.insert(key, nested.clone());
            self.ops.push(PatchOp::Add {
                path: first_missing,
                value: nested,
            });
            return true;
        }
        false
    }

    /// Removes the member at `ptr` when present.
    pub fn remove(&mut self, ptr: &Pointer) -> bool {
        let Some(parent) = ptr.parent() else {
            return false;
        };
        let Some(last) = ptr.tokens().last().cloned() else {
            return false;
        };
        let removed = match parent.get_mut(&mut self.doc) {
            Some(Value::Object(m)) => m.remove(&last).is_some(),
            Some(Value::Array(a)) => match last.parse::<usize>() {
                Ok(i) if i < a.len() => {
                    a.remove(i);
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if removed {
            self.ops.push(PatchOp::Remove { path: ptr.clone() });
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_rfc6901_escapes() {
        let p = Pointer::from_tokens(["metadata", "annotations", "a.io/x~y"]);
        assert_eq!(p.render(), "/metadata/annotations/a.io~1x~0y");
    }

    #[test]
    fn creates_missing_parents_once_then_adds_into_them() {
        let mut b = PatchBuilder::new(json!({"spec": {"containers": [{"name": "a"}]}}));
        let c = Pointer::from_tokens(["spec", "containers", "0", "resources"]);
        assert!(b.add_if_absent(&c.child("requests").child("cpu"), json!("100m")));
        assert!(b.add_if_absent(&c.child("requests").child("memory"), json!("64Mi")));
        let ops = b.ops().iter().map(PatchOp::to_json).collect::<Vec<_>>();
        assert_eq!(
            ops,
            vec![
                json!({"op":"add","path":"/spec/containers/0/resources","value":{"requests":{"cpu":"100m"}}}),
                json!({"op":"add","path":"/spec/containers/0/resources/requests/memory","value":"64Mi"}),
            ]
        );
    }

    #[test]
    fn never_overwrites_present_values() {
        let mut b = PatchBuilder::new(json!({"metadata": {"labels": {"a": "1"}}}));
        assert!(!b.add_if_absent(
            &Pointer::from_tokens(["metadata", "labels", "a"]),
            json!("2")
        ));
        assert!(b.add_if_absent(
            &Pointer::from_tokens(["metadata", "labels", "b"]),
            json!("2")
        ));
        assert_eq!(
            b.doc(),
            &json!({"metadata": {"labels": {"a": "1", "b": "2"}}})
        );
    }

    #[test]
    fn null_parent_is_overwritten_by_add() {
        let mut b = PatchBuilder::new(json!({"metadata": {"labels": null}}));
        assert!(b.add_if_absent(
            &Pointer::from_tokens(["metadata", "labels", "x"]),
            json!("y")
        ));
        assert_eq!(
            b.ops()[0].to_json(),
            json!({"op":"add","path":"/metadata/labels","value":{"x":"y"}})
        );
    }

    #[test]
    fn refuses_paths_through_scalars() {
        let mut b = PatchBuilder::new(json!({"spec": "oops"}));
        assert!(!b.set(&Pointer::from_tokens(["spec", "x"]), json!(1)));
        assert!(b.is_empty());
    }
}
