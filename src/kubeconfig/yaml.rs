//! kubeconfig YAML, read and written the way kubectl reads it.
//!
//! kubectl reads YAML 1.1 (go-yaml v2): bare `yes`, `no`, `on`, `off`, `y`, `n`
//! are booleans, `0777` is octal, anchors are expanded and `<<` merge keys apply.
//! `parse` reads a document with exactly those rules, so a foreign entry keeps
//! the meaning kubectl gave it. `to_string` writes a string plain only when no
//! YAML version could read it as anything but that string; everything else is
//! double-quoted, with every character YAML forbids or folds escaped.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_serde::{Mapping, Number, Value};

/// Most nodes a document may expand to through aliases (a "billion laughs"
/// file is refused rather than exhausting memory).
const MAX_NODES: usize = 10_000_000;

/// Parses one YAML document with kubectl's YAML 1.1 rules (see the module doc).
pub fn parse(text: &str) -> Result<Value, String> {
    #[derive(Default)]
    struct Events(Vec<(Event, Marker)>);
    impl MarkedEventReceiver for Events {
        fn on_event(&mut self, event: Event, mark: Marker) {
            self.0.push((event, mark));
        }
    }
    let mut events = Events::default();
    Parser::new_from_str(text)
        .load(&mut events, false)
        .map_err(|e| e.to_string())?;
    let mut builder = Builder {
        events: events.0.into_iter(),
        anchors: Default::default(),
        nodes: 0,
    };
    loop {
        match builder.next()? {
            Some((Event::DocumentStart, _)) => break,
            Some(_) => continue,
            None => return Ok(Value::Null),
        }
    }
    match builder.next()? {
        Some((Event::DocumentEnd, _)) | None => Ok(Value::Null),
        Some((event, mark)) => builder.node(event, mark),
    }
}

struct Builder {
    events: std::vec::IntoIter<(Event, Marker)>,
    /// Anchored values with their node counts.
    anchors: std::collections::HashMap<usize, (Value, usize)>,
    nodes: usize,
}

impl Builder {
    fn next(&mut self) -> Result<Option<(Event, Marker)>, String> {
        Ok(self.events.next())
    }

    fn node(&mut self, event: Event, mark: Marker) -> Result<Value, String> {
        let (value, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => (scalar(text, style, tag.as_ref()), anchor),
            Event::Alias(id) => {
                let (value, nodes) = self
                    .anchors
                    .get(&id)
                    .ok_or_else(|| format!("unknown anchor at line {}", mark.line()))?;
                self.nodes += nodes;
                if self.nodes > MAX_NODES {
                    return Err(format!(
                        "aliases expand to more than {MAX_NODES} nodes at line {}",
                        mark.line()
                    ));
                }
                return Ok(value.clone());
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    match self.next()? {
                        Some((Event::SequenceEnd, _)) => break,
                        Some((event, mark)) => items.push(self.node(event, mark)?),
                        None => return Err("unterminated sequence".to_string()),
                    }
                }
                (Value::Sequence(items), anchor)
            }
            Event::MappingStart(anchor, _) => {
                let mut map = Mapping::new();
                loop {
                    let (key, key_mark) = match self.next()? {
                        Some((Event::MappingEnd, _)) => break,
                        Some((event, mark)) => {
                            let merge = matches!(&event, Event::Scalar(t, TScalarStyle::Plain, _, None) if t == "<<");
                            let key = self.node(event, mark)?;
                            (if merge { None } else { Some(key) }, mark)
                        }
                        None => return Err("unterminated mapping".to_string()),
                    };
                    let (event, mark) = self
                        .next()?
                        .ok_or_else(|| "a mapping key without a value".to_string())?;
                    let value = self.node(event, mark)?;
                    match key {
                        Some(key) => {
                            map.insert(key, value);
                        }
                        None => merge(&mut map, value, key_mark)?,
                    }
                }
                (Value::Mapping(map), anchor)
            }
            other => return Err(format!("unexpected {other:?} at line {}", mark.line())),
        };
        self.nodes += 1;
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), size(&value)));
        }
        Ok(value)
    }
}

fn size(value: &Value) -> usize {
    match value {
        Value::Sequence(s) => 1 + s.iter().map(size).sum::<usize>(),
        Value::Mapping(m) => 1 + m.iter().map(|(k, v)| size(k) + size(v)).sum::<usize>(),
        _ => 1,
    }
}

/// A `<<` merge key, as go-yaml v2 applies it: in document order, each merged
/// key replacing what is already there; in a list, earlier mappings win.
fn merge(map: &mut Mapping, value: Value, mark: Marker) -> Result<(), String> {
    let wrong = || {
        format!(
            "a `<<` merge key needs a mapping or a list of mappings (line {})",
            mark.line()
        )
    };
    match value {
        Value::Mapping(merged) => {
            for (k, v) in merged {
                map.insert(k, v);
            }
        }
        Value::Sequence(items) => {
            for item in items.into_iter().rev() {
                let Value::Mapping(merged) = item else {
                    return Err(wrong());
                };
                for (k, v) in merged {
                    map.insert(k, v);
                }
            }
        }
        _ => return Err(wrong()),
    }
    Ok(())
}

/// A scalar as go-yaml v2 resolves it: quoted (or `!!str`) is a string; plain is
/// null, a YAML 1.1 boolean, an integer (`0x`, `0o`, `0b`, leading-zero octal,
/// `_` separators), a float, or else a string. Timestamps stay strings.
fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    let core = tag
        .filter(|t| t.handle == "tag:yaml.org,2002:" || t.handle == "!!")
        .map(|t| t.suffix.as_str());
    if core == Some("str") || (style != TScalarStyle::Plain && core.is_none()) {
        return Value::String(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Number(f64::INFINITY.into());
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Number(f64::NEG_INFINITY.into()),
        ".nan" | ".NaN" | ".NAN" => return Value::Number(f64::NAN.into()),
        _ => {}
    }
    if let Some(number) = number(&text) {
        return Value::Number(number);
    }
    Value::String(text)
}

/// Go's `strconv.ParseInt(s, 0, 64)` after removing `_`, then `ParseUint`, then
/// a YAML-style float.
fn number(text: &str) -> Option<Number> {
    let first = text.chars().next()?;
    if !(first.is_ascii_digit() || matches!(first, '-' | '+' | '.')) {
        return None;
    }
    let plain = text.replace('_', "");
    let (negative, digits) = match plain.as_bytes().first()? {
        b'-' => (true, &plain[1..]),
        b'+' => (false, &plain[1..]),
        _ => (false, plain.as_str()),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(hex) = lower.strip_prefix("0x") {
        (16, hex)
    } else if let Some(bin) = lower.strip_prefix("0b") {
        (2, bin)
    } else if let Some(oct) = lower.strip_prefix("0o") {
        (8, oct)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if !body.is_empty()
        && body.chars().all(|c| c.is_digit(radix))
        && let Ok(n) = u64::from_str_radix(body, radix)
    {
        return if negative {
            (n <= i64::MAX as u64 + 1).then(|| Number::from((n as i128).wrapping_neg() as i64))
        } else {
            Some(Number::from(n))
        };
    }
    // yamlStyleFloat: ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
    let (mantissa, exponent) = match digits.find(['e', 'E']) {
        Some(i) => (&digits[..i], Some(&digits[i + 1..])),
        None => (digits, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => !frac.is_empty() && frac.chars().all(|c| c.is_ascii_digit()),
        Some((int, frac)) => {
            !int.is_empty()
                && int.chars().all(|c| c.is_ascii_digit())
                && frac.chars().all(|c| c.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.chars().all(|c| c.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    if mantissa_ok && exponent_ok {
        return plain.parse::<f64>().ok().map(Number::from);
    }
    None
}

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
        quoted(s)
    }
}

/// A double-quoted scalar. Beyond `"` and `\\`, every character YAML forbids
/// in a document (C0 but tab, DEL, C1, surrogates, U+FFFE/FFFF) or folds or
/// strips on reading (NEL, U+2028, U+2029, a BOM) is escaped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
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

#[cfg(test)]
mod reading {
    use super::*;

    fn read(text: &str) -> Value {
        parse(text).unwrap()
    }

    #[test]
    fn plain_scalars_resolve_as_yaml_11() {
        let doc = read(
            "a: yes\nb: Off\nc: 0777\nd: 0x1F\ne: 1_000\nf: 1.5e3\ng: ~\nh: 2026-01-01\ni: '0777'\nj: !!str on\nk: .5\nl: -0b11\nm: 09\nnn: \"y\"\nn: key\n",
        );
        let want = [
            ("a", Value::Bool(true)),
            ("b", Value::Bool(false)),
            ("c", Value::Number(511.into())),
            ("d", Value::Number(31.into())),
            ("e", Value::Number(1000.into())),
            ("f", Value::Number(1500.0.into())),
            ("g", Value::Null),
            ("h", Value::String("2026-01-01".into())),
            ("i", Value::String("0777".into())),
            ("j", Value::String("on".into())),
            ("k", Value::Number(0.5.into())),
            ("l", Value::Number((-3).into())),
            // Not octal, and Go's float syntax takes it: 9.
            ("m", Value::Number(9.0.into())),
            ("nn", Value::String("y".into())),
        ];
        for (key, value) in want {
            assert_eq!(doc[key], value, "{key}");
        }
        // Keys resolve too: `n` is the boolean false.
        assert_eq!(doc[&Value::Bool(false)], Value::String("key".into()));
    }

    #[test]
    fn anchors_expand_and_merge_keys_apply_in_document_order() {
        let doc = read(
            "base: &b {token: t, user: u}\nother: &o {token: o, extra: 1}\nx:\n  <<: *b\n  user: mine\nw:\n  user: early\n  <<: [*b, *o]\nz: *b\n",
        );
        assert_eq!(doc["x"]["token"], Value::String("t".into()));
        assert_eq!(doc["x"]["user"], Value::String("mine".into()));
        assert!(doc["x"].get("<<").is_none());
        // go-yaml v2: a merge overrides keys before it; earlier list items win.
        assert_eq!(doc["w"]["user"], Value::String("u".into()));
        assert_eq!(doc["w"]["token"], Value::String("t".into()));
        assert_eq!(doc["w"]["extra"], Value::Number(1.into()));
        assert_eq!(doc["z"], doc["base"]);
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n".to_string();
        for i in 1..9 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse(&text).unwrap_err().contains("aliases expand"));
    }

    #[test]
    fn every_character_yaml_folds_or_forbids_round_trips_escaped() {
        let nasty = "a\u{7f}b\u{85}c\u{9f}d\u{2028}e\u{2029}f\u{feff}g\u{1}h\ti\nj\"k\\l";
        let written = to_string(&Value::String(nasty.to_string()));
        assert!(
            written
                .trim_end()
                .chars()
                .all(|c| c == ' ' || !c.is_control()),
            "{written:?}"
        );
        for c in ['\u{2028}', '\u{2029}', '\u{feff}'] {
            assert!(!written.contains(c), "{written:?}");
        }
        assert_eq!(read(&written), Value::String(nasty.to_string()));
    }
}
