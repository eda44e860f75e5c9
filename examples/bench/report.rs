//! The results: one table per measurement, printed as markdown and written as JSON.

use serde_json::{Map, Value};

/// A number rounded to `places` decimals, as JSON.
pub fn num(x: f64, places: i32) -> Value {
    let p = 10f64.powi(places);
    serde_json::Number::from_f64((x * p).round() / p).map_or(Value::Null, Value::Number)
}

/// One measurement's rows (same keys in each) and notes.
pub struct Table {
    pub key: &'static str,
    pub title: &'static str,
    rows: Vec<Map<String, Value>>,
    notes: Vec<String>,
}

impl Table {
    pub fn new(key: &'static str, title: &'static str) -> Table {
        Table {
            key,
            title,
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<(&str, Value)>) {
        self.rows
            .push(cells.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    }

    pub fn note(&mut self, text: String) {
        eprintln!("  note: {text}");
        self.notes.push(text);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.notes.is_empty()
    }

    /// The last row, on one line (progress on stderr).
    pub fn last_line(&self) -> String {
        self.rows.last().map_or_else(String::new, |r| {
            r.iter()
                .map(|(k, v)| format!("{k}={}", show(v)))
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        if !self.rows.is_empty() {
            // Every key of every row, in the order they first appear.
            let mut keys: Vec<&String> = Vec::new();
            for k in self.rows.iter().flat_map(|r| r.keys()) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            out += &format!(
                "| {} |\n",
                keys.iter()
                    .map(|k| k.replace('_', " "))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            out += &format!("|{}\n", "---|".repeat(keys.len()));
            for r in &self.rows {
                let cells: Vec<String> = keys
                    .iter()
                    .map(|k| r.get(k.as_str()).map_or_else(|| "–".to_string(), show))
                    .collect();
                out += &format!("| {} |\n", cells.join(" | "));
            }
            out += "\n";
        }
        for n in &self.notes {
            out += &format!("{n}\n\n");
        }
        out
    }

    pub fn json(&self) -> Value {
        serde_json::json!({ "title": self.title, "rows": self.rows, "notes": self.notes })
    }
}

/// A cell: numbers with thousands separators, null as a dash.
fn show(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(i), _) => group(i),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => group(f as u64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
