//! JSON text exactly as Python's `json.dumps` writes it with its defaults.
//!
//! The official client sends `entry_context` as `json.dumps(context)`: `", "` and `": "`
//! separators, every non-ASCII character (and DEL) escaped as `\uXXXX` (surrogate pairs
//! above the BMP), and floats in Python's `repr` form (`1e-07`, `1e+16`, `100.0`). Writing
//! the same bytes keeps the Rust client wire-identical, so an engine that stores or
//! compares the text sees no difference between the two clients.

use serde_json::Value;
use std::fmt::Write as _;

/// `json.dumps(value)` with Python's default arguments.
pub fn dumps(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                out.push_str(&python_float_repr(f));
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, k);
                out.push_str(": ");
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest round-trip digits, in fixed notation when the
/// decimal exponent is in -4..16, else `d.ddde±XX` with at least two exponent digits.
fn python_float_repr(f: f64) -> String {
    // serde_json cannot hold NaN or infinities, so `f` is finite here.
    let sci = format!("{f:e}"); // shortest round-trip digits, e.g. "-1.5e-7"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.push_str(&"0".repeat((-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.push_str(&"0".repeat(int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.abs());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn separators_and_order_follow_python() {
        let v: Value = serde_json::from_str(r#"{"b": 1, "a": [1, 2, {"c": null}], "t": true}"#)
            .expect("valid json");
        assert_eq!(
            dumps(&v),
            r#"{"b": 1, "a": [1, 2, {"c": null}], "t": true}"#
        );
    }

    #[test]
    fn non_ascii_is_escaped_like_ensure_ascii() {
        let v = json!({"reaction": "🔥", "name": "Zoë", "q": "a\"b\\c\n\u{7f}/"});
        assert_eq!(
            dumps(&v),
            r#"{"reaction": "\ud83d\udd25", "name": "Zo\u00eb", "q": "a\"b\\c\n\u007f/"}"#
        );
    }

    #[test]
    fn floats_use_python_repr() {
        let cases = [
            (0.1, "0.1"),
            (100.0, "100.0"),
            (-2.5, "-2.5"),
            (1e-7, "1e-07"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e300, "1.5e+300"),
            (123456.789, "123456.789"),
        ];
        for (f, want) in cases {
            assert_eq!(python_float_repr(f), want, "for {f}");
        }
    }
}
