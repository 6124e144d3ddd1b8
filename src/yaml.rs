//! A small YAML emitter for kubeconfig documents that kubectl reads back exactly.
//!
//! kubectl reads YAML 1.1, where bare `yes`, `no`, `on`, `off`, `y`, `n` are
//! booleans and `2026-01-01` is a timestamp; serde_yaml-style emitters write such
//! strings unquoted, and a cluster named `on` then breaks the whole file. Here a
//! string is written plain only when no YAML version could read it as anything
//! but that string; everything else is double-quoted (JSON escaping is valid YAML).

use yaml_serde::Value;

pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Mapping(m) if !m.is_empty() => block(&mut out, value, 0),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

/// A non-empty mapping or sequence, every line starting at `indent`.
fn block(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                out.push_str(&pad);
                out.push_str(&inline(key));
                out.push(':');
                match child {
                    Value::Mapping(m) if !m.is_empty() => {
                        out.push('\n');
                        block(out, child, indent + 2);
                    }
                    // kubectl's style: a list under a key starts at the key's indent.
                    Value::Sequence(s) if !s.is_empty() => {
                        out.push('\n');
                        block(out, child, indent);
                    }
                    _ => {
                        out.push(' ');
                        out.push_str(&inline(child));
                        out.push('\n');
                    }
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                match item {
                    Value::Mapping(m) if !m.is_empty() => item_block(out, item, indent),
                    Value::Sequence(s) if !s.is_empty() => item_block(out, item, indent),
                    _ => {
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&inline(item));
                        out.push('\n');
                    }
                }
            }
        }
        Value::Tagged(tagged) => block(out, &tagged.value, indent),
        other => {
            out.push_str(&pad);
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

/// A collection inside a sequence: rendered two deeper, then its first line's
/// indentation becomes the `- ` marker.
fn item_block(out: &mut String, item: &Value, indent: usize) {
    let mut child = String::new();
    block(&mut child, item, indent + 2);
    out.push_str(&" ".repeat(indent));
    out.push_str("- ");
    out.push_str(&child[indent + 2..]);
}

/// A value on one line: scalars, and empty collections as `{}` / `[]`.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Sequence(s) if s.is_empty() => "[]".to_string(),
        Value::Mapping(m) if m.is_empty() => "{}".to_string(),
        Value::Sequence(items) => {
            let parts: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Mapping(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", inline(k), inline(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, inline(&tagged.value)),
    }
}

/// Plain when unambiguous in YAML 1.1 and 1.2, double-quoted otherwise.
pub fn string(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string always encodes")
    }
}

fn is_plain_safe(s: &str) -> bool {
    const SPECIAL: [&str; 13] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "nan", "inf", "=",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '/' || first == '_')
        && !s.ends_with(':')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/@+=:-".contains(c))
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_11_booleans_and_look_alikes_are_quoted() {
        for word in [
            "on",
            "ON",
            "off",
            "yes",
            "No",
            "y",
            "N",
            "true",
            "null",
            "~",
            "",
            "1",
            "0x1F",
            "1.5",
            "2026-01-01",
            "-x",
            "a b",
            "x:",
            "#c",
            "*a",
        ] {
            let written = string(word);
            assert!(written.starts_with('"'), "{word:?} was written plain");
            let back: Value = yaml_serde::from_str(&written).unwrap();
            assert_eq!(back, Value::String(word.to_string()));
        }
        for word in [
            "prod",
            "gke_my-project_europe-west1_a",
            "https://1.2.3.4",
            "arn:aws:eks:us-east-1:1:cluster/x",
            "LS0tLS1CRUdJTiBDRVJU+/=",
        ] {
            assert_eq!(string(word), word);
        }
    }

    #[test]
    fn round_trips_a_kubeconfig_shape() {
        let text = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://x\n    extensions:\n    - name: fleetctx\n      extension:\n        n: \"on\"\n  name: \"yes\"\nusers:\n- name: u\n  user:\n    exec:\n      args:\n      - token\n      - \"off\"\n      env: null\npreferences: {}\nempty: []\nnested:\n- - a\n  - b\n";
        let value: Value = yaml_serde::from_str(text).unwrap();
        let written = to_string(&value);
        let again: Value = yaml_serde::from_str(&written).unwrap();
        assert_eq!(again, value, "{written}");
        assert!(written.contains("\"n\": \"on\""), "{written}");
    }
}
