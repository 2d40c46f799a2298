//! AWS WAF web ACL JSON into `shardgate_waf::json::WebAclJson` without
//! recursion over the statement tree.
//!
//! A statement holds statements (`NotStatement.Statement`,
//! `AndStatement.Statements[]`, `OrStatement.Statements[]`,
//! `RateBasedStatement.ScopeDownStatement`), and serde's derived
//! deserializer recurses once per level with a large frame: a
//! `StatementJson` is several KiB, and a debug build spends over 100 KiB of
//! stack per level, so about 15 levels overflow a 2 MiB tokio worker. Here
//! each statement is cut out of its parent (an empty object `{}` is left in
//! its slot), every statement is deserialized alone, in document order, and
//! the tree is put back together bottom-up. The stack used no longer depends
//! on how deep the statements nest; errors keep the JSON path serde would
//! have named (`Rules[0].Statement.NotStatement.Statement.ByteMatchStatement`).

use serde_json::{Map, Value};
use shardgate_waf::json::{StatementJson, WebAclJson};

use crate::{Invalid, json};

/// Where a cut-out statement goes back in its parent.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// `NotStatement.Statement`.
    Not,
    /// `AndStatement.Statements[i]`.
    And(usize),
    /// `OrStatement.Statements[i]`.
    Or(usize),
    /// `RateBasedStatement.ScopeDownStatement`.
    ScopeDown,
}

/// A statement still to cut out: its value, path and (parent index, slot).
type Pending = (Value, String, Option<(usize, Slot)>);

/// One statement, cut out of the tree.
struct Node {
    /// The statement with its child statements replaced by `{}`.
    shell: Value,
    /// Its JSON path, for errors.
    path: String,
    /// Its children, as (slot, index in the node list).
    children: Vec<(Slot, usize)>,
}

/// Deserializes a web ACL (schema check, unknown fields refused, paths in errors).
pub fn web_acl_from_value(mut value: Value) -> Result<WebAclJson, Invalid> {
    // Cut each rule's statement out, so the ACL itself deserializes flat.
    let mut statements = Vec::new();
    if let Some(Value::Array(rules)) = value.get_mut("Rules") {
        for (i, rule) in rules.iter_mut().enumerate() {
            if let Some(statement) = rule.as_object_mut().and_then(|r| r.get_mut("Statement")) {
                statements.push((i, std::mem::replace(statement, empty())));
            }
        }
    }
    let mut acl: WebAclJson = json::from_value(value)?;
    for (i, statement) in statements {
        let built = statement_from_value(statement, format!("Rules[{i}].Statement"))?;
        if let Some(rule) = acl.rules.as_mut().and_then(|rules| rules.get_mut(i)) {
            rule.statement = built;
        }
    }
    Ok(acl)
}

/// Deserializes one statement tree found at `path`.
pub fn statement_from_value(root: Value, path: String) -> Result<StatementJson, Invalid> {
    // Pre-order: a parent always comes before its children.
    let mut nodes: Vec<Node> = Vec::new();
    let mut pending: Vec<Pending> = vec![(root, path, None)];
    while let Some((mut shell, path, parent)) = pending.pop() {
        let index = nodes.len();
        if let Some((p, slot)) = parent {
            nodes[p].children.push((slot, index));
        }
        let mut cut = Vec::new();
        if let Value::Object(obj) = &mut shell {
            if let Some(child) = member(obj, "NotStatement").and_then(|not| take(not, "Statement")) {
                cut.push((child, format!("{path}.NotStatement.Statement"), Slot::Not));
            }
            for (name, slot) in [("AndStatement", Slot::And as fn(usize) -> Slot), ("OrStatement", Slot::Or)] {
                if let Some(Value::Array(list)) = member(obj, name).and_then(|m| m.get_mut("Statements")) {
                    for (i, item) in list.iter_mut().enumerate() {
                        let child = std::mem::replace(item, empty());
                        cut.push((child, format!("{path}.{name}.Statements[{i}]"), slot(i)));
                    }
                }
            }
            if let Some(child) = member(obj, "RateBasedStatement").and_then(|r| take(r, "ScopeDownStatement")) {
                cut.push((child, format!("{path}.RateBasedStatement.ScopeDownStatement"), Slot::ScopeDown));
            }
        }
        // Reversed so the first child is visited first (document order).
        for (child, child_path, slot) in cut.into_iter().rev() {
            pending.push((child, child_path, Some((index, slot))));
        }
        nodes.push(Node { shell, path, children: Vec::new() });
    }

    // Deserialize every statement alone, in document order: the first error
    // is the one serde would have reported.
    let mut built: Vec<Option<StatementJson>> = Vec::with_capacity(nodes.len());
    let mut children: Vec<Vec<(Slot, usize)>> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let statement: StatementJson = json::from_value(node.shell).map_err(|e| e.within(&node.path))?;
        built.push(Some(statement));
        children.push(node.children);
    }
    // Reassemble bottom-up: children have larger indices than their parent.
    for index in (0..built.len()).rev() {
        for &(slot, child) in &children[index] {
            let Some(child) = built[child].take() else { continue };
            let Some(parent) = built[index].as_mut() else { continue };
            put_back(parent, slot, child);
        }
    }
    Ok(built.first_mut().and_then(Option::take).unwrap_or_default())
}

/// Puts `child` in `slot` of `parent`, which its shell left empty.
fn put_back(parent: &mut StatementJson, slot: Slot, child: StatementJson) {
    let target = match slot {
        Slot::Not => parent.not.as_mut().map(|n| &mut n.statement),
        Slot::And(i) => parent.and.as_mut().and_then(|a| a.statements.get_mut(i)),
        Slot::Or(i) => parent.or.as_mut().and_then(|o| o.statements.get_mut(i)),
        Slot::ScopeDown => parent.rate_based.as_mut().and_then(|r| r.scope_down_statement.as_mut()),
    };
    if let Some(target) = target {
        *target = child;
    }
}

fn empty() -> Value {
    Value::Object(Map::new())
}

/// `obj[name]` when it is an object.
fn member<'a>(obj: &'a mut Map<String, Value>, name: &str) -> Option<&'a mut Map<String, Value>> {
    obj.get_mut(name).and_then(Value::as_object_mut)
}

/// Takes `obj[name]` out, leaving `{}` in its place.
fn take(obj: &mut Map<String, Value>, name: &str) -> Option<Value> {
    obj.get_mut(name).map(|v| std::mem::replace(v, empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAF: &str = r#"{"ByteMatchStatement": {"SearchString": "x", "FieldToMatch": {"UriPath": {}},
        "TextTransformations": [{"Priority": 0, "Type": "NONE"}], "PositionalConstraint": "CONTAINS"}}"#;

    fn acl(statement: &str) -> Value {
        serde_json::from_str(&format!(
            r#"{{"Name": "a", "DefaultAction": {{"Allow": {{}}}},
            "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "a"}},
            "Rules": [{{"Name": "r", "Priority": 0, "Action": {{"Block": {{}}}},
              "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "r"}},
              "Statement": {statement}}}]}}"#
        ))
        .expect("test JSON")
    }

    #[test]
    fn the_result_equals_serdes_own() {
        let trees = [
            LEAF.to_owned(),
            format!(r#"{{"NotStatement": {{"Statement": {LEAF}}}}}"#),
            format!(
                r#"{{"AndStatement": {{"Statements": [{LEAF}, {{"OrStatement": {{"Statements": [{LEAF}, {{"NotStatement": {{"Statement": {LEAF}}}}}]}}}}]}}}}"#
            ),
            format!(
                r#"{{"RateBasedStatement": {{"Limit": 100, "AggregateKeyType": "IP", "ScopeDownStatement": {{"NotStatement": {{"Statement": {LEAF}}}}}}}}}"#
            ),
        ];
        for tree in trees {
            let value = acl(&tree);
            let ours = web_acl_from_value(value.clone()).expect("valid");
            let serdes: WebAclJson = serde_json::from_value(value).expect("valid for serde too");
            assert_eq!(ours, serdes, "{tree}");
        }
    }

    #[test]
    fn errors_name_the_same_path_as_serde() {
        let bad = format!(
            r#"{{"AndStatement": {{"Statements": [{LEAF}, {{"NotStatement": {{"Statement": {{"ByteMatchStatement": {{"SearchString": 5}}}}}}}}]}}}}"#
        );
        let e = web_acl_from_value(acl(&bad)).unwrap_err();
        assert_eq!(
            e.field,
            "Rules[0].Statement.AndStatement.Statements[1].NotStatement.Statement.ByteMatchStatement.SearchString"
        );
        let unknown = format!(r#"{{"NotStatement": {{"Statement": {LEAF}, "Extra": 1}}}}"#);
        let e = web_acl_from_value(acl(&unknown)).unwrap_err();
        assert_eq!(e.field, "Rules[0].Statement.NotStatement.Extra");
        let e = web_acl_from_value(serde_json::json!({"Rules": [{"Name": "r"}]})).unwrap_err();
        assert_eq!(e.field, "Rules[0].Priority");
    }

    #[test]
    fn depth_costs_no_stack() {
        // 200 levels, built in memory (no parse would let it through): serde's
        // derive needs over 100 KiB per level in a debug build; this needs a
        // fixed amount whatever the depth.
        let mut tree = serde_json::from_str::<Value>(LEAF).expect("leaf");
        for _ in 0..200 {
            tree = serde_json::json!({"NotStatement": {"Statement": tree}});
        }
        let mut value = acl("{}");
        value["Rules"][0]["Statement"] = tree;
        let out = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || {
                let acl = web_acl_from_value(value).map_err(|e| e.to_string())?;
                let mut depth = 0;
                let mut cur = acl.rules.as_ref().and_then(|r| r.first()).map(|r| &r.statement);
                while let Some(st) = cur {
                    cur = st.not.as_ref().map(|n| &n.statement);
                    depth += 1;
                }
                Ok::<usize, String>(depth)
            })
            .expect("spawn")
            .join();
        assert!(matches!(out, Ok(Ok(201))), "{out:?}");
    }
}
