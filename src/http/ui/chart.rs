//! A stacked bar chart as plain SVG written with maud: no crate, no script, nothing fetched.
//! Generic over its series (a key, a label and a colour each), so the calls per day and a
//! forecast draw alike. It says what it shows three ways: the bars (`role="img"` with a
//! `<title>` and a `<desc>` summing it up), a legend, and the same numbers in a `<table>`
//! with a `<caption>` inside `<details>`, for screen readers and for copying.
//!
//! The y axis runs from 0 to a round number at or above the biggest day, so all zeros draw
//! an empty chart with its axis, and one huge day draws the others as thin bars: a day with
//! calls always gets at least a pixel, and its total is written above its bar.

use maud::{Markup, html};

/// A share (0 to 100) as a bar across its cell.
pub fn bar(percent: f64) -> Markup {
    html! {
        svg.bar viewBox="0 0 100 1" preserveAspectRatio="none" aria-hidden="true" focusable="false" {
            rect width=(format!("{:.1}", percent.clamp(0.0, 100.0))) height="1" {}
        }
    }
}

/// One stack of the chart: how its values are named and drawn.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Stable, machine-readable (`data-series` in the table).
    pub key: &'a str,
    pub label: &'a str,
    /// A CSS colour.
    pub colour: &'a str,
}

/// One bar of a chart: a day's values, in the order of the chart's series (not
/// `forecast::Day`, the day a forecast tallies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayBar {
    /// Stable, machine-readable (`data-day` in the table), e.g. `2026-11-24`.
    pub key: String,
    /// Under the bar, short, e.g. `Tue 24`.
    pub label: String,
    pub values: Vec<u64>,
}

impl DayBar {
    pub fn total(&self) -> u64 {
        self.values.iter().sum()
    }
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 250.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 34.0;

/// A round step for about four ticks up to `max` (at least 1), and the axis top it gives.
pub fn axis(max: u64) -> (u64, u64) {
    if max == 0 {
        return (1, 4);
    }
    let raw = max.div_ceil(4);
    let mut magnitude = 1u64;
    while magnitude.saturating_mul(10) <= raw {
        magnitude = magnitude.saturating_mul(10);
    }
    let step = [1u64, 2, 5, 10]
        .into_iter()
        .map(|m| m.saturating_mul(magnitude))
        .find(|s| *s >= raw)
        .unwrap_or(raw);
    (step, max.div_ceil(step).saturating_mul(step))
}

/// `1234` as `1.2k`, `2500000` as `2.5M`: short enough for a tick or a bar.
pub fn compact(n: u64) -> String {
    let short = |v: f64, unit: &str| {
        let s = format!("{v:.1}");
        format!("{}{unit}", s.strip_suffix(".0").unwrap_or(&s))
    };
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => short(n as f64 / 1e3, "k"),
        _ => short(n as f64 / 1e6, "M"),
    }
}

/// The chart `id` (its element id; `id-title`, `id-desc` inside), titled `title`.
/// Series with nothing in any day are left out of the legend and the table (all are kept
/// when every value is 0).
pub fn stacked_bars(id: &str, title: &str, days: &[DayBar], series: &[Series]) -> Markup {
    let sum = |i: usize| {
        days.iter()
            .map(|d| d.values.get(i).copied().unwrap_or(0))
            .sum::<u64>()
    };
    let mut shown: Vec<usize> = (0..series.len()).filter(|i| sum(*i) > 0).collect();
    if shown.is_empty() {
        shown = (0..series.len()).collect();
    }
    let max = days.iter().map(DayBar::total).max().unwrap_or(0);
    let total: u64 = days.iter().map(DayBar::total).sum();
    let (step, top) = axis(max);
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let y = |v: u64| TOP + plot_h - v as f64 * plot_h / top as f64;
    let slot = plot_w / days.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let ticks: Vec<u64> = (0..=top / step).map(|k| k * step).collect();
    let desc = match days.iter().max_by_key(|d| d.total()) {
        Some(d) if total > 0 => format!(
            "{total} in total over {} days; the most on {} ({}). The numbers are in the table below.",
            days.len(),
            d.key,
            d.total()
        ),
        _ => format!("None in these {} days.", days.len()),
    };
    let (title_id, desc_id) = (format!("{id}-title"), format!("{id}-desc"));
    html! {
        figure.chart id=(id) {
            div.plot { svg role="img" aria-labelledby=(format!("{title_id} {desc_id}"))
                viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) width="100%"
                preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg" {
                title id=(title_id) { (title) }
                desc id=(desc_id) { (desc) }
                g.axis font-size="11" fill="#555" {
                    @for t in &ticks {
                        line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(fmt(y(*t))) y2=(fmt(y(*t)))
                            stroke=(if *t == 0 { "#888" } else { "#e3e3e3" }) stroke-width="1" {}
                        text x=(LEFT - 6.0) y=(fmt(y(*t) + 4.0)) text-anchor="end" { (compact(*t)) }
                    }
                }
                @for (i, d) in days.iter().enumerate() {
                    @let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
                    @let cx = fmt(x + bar / 2.0);
                    g data-day=(d.key) {
                        @for (s, base, h) in segments(d, &shown, plot_h, top) {
                            rect x=(fmt(x)) y=(fmt(TOP + plot_h - base - h)) width=(fmt(bar)) height=(fmt(h))
                                fill=(series[s].colour) {
                                title { (d.key) " " (series[s].label) ": " (d.values.get(s).copied().unwrap_or(0)) }
                            }
                        }
                        @if d.total() > 0 {
                            @let drawn: f64 = segments(d, &shown, plot_h, top).iter().map(|(_, _, h)| h).sum();
                            text x=(cx) y=(fmt(TOP + plot_h - drawn - 3.0)) text-anchor="middle"
                                font-size="10" fill="#333" { (compact(d.total())) }
                        }
                        text x=(cx) y=(fmt(HEIGHT - BOTTOM + 16.0)) text-anchor="middle"
                            font-size="10" fill="#555" { (d.label) }
                    }
                }
            } }
            ul.legend {
                @for s in &shown {
                    // A polygon, not a rect: the chart's rects are its bars. No style
                    // attribute: the page's policy allows none.
                    li {
                        svg.swatch viewBox="0 0 10 10" aria-hidden="true" focusable="false" {
                            polygon points="0,0 10,0 10,10 0,10" fill=(series[*s].colour) {}
                        }
                        " " (series[*s].label)
                    }
                }
            }
            details id=(format!("{id}-numbers")) {
                summary { "The numbers" }
                div.scroll { table {
                    caption { (title) }
                    thead { tr {
                        th scope="col" { "Day" }
                        @for s in &shown { th scope="col" { (series[*s].label) } }
                        th scope="col" { "Total" }
                    } }
                    tbody {
                        @for d in days {
                            tr data-day=(d.key) {
                                th scope="row" { (d.key) }
                                @for s in &shown {
                                    td.count data-series=(series[*s].key) { (d.values.get(*s).copied().unwrap_or(0)) }
                                }
                                td.count data-total { (d.total()) }
                            }
                        }
                    }
                    tfoot { tr {
                        th scope="row" { "Total" }
                        @for s in &shown { td.count { (sum(*s)) } }
                        td.count { (total) }
                    } }
                } }
            }
        }
    }
}

/// The drawn pieces of a day's bar, bottom up: (series, height below it, its height), in
/// pixels of the plot; a value above 0 gets at least one pixel.
fn segments(d: &DayBar, shown: &[usize], plot_h: f64, top: u64) -> Vec<(usize, f64, f64)> {
    let mut base = 0.0;
    let mut out = Vec::new();
    for &s in shown {
        let v = d.values.get(s).copied().unwrap_or(0);
        if v == 0 {
            continue;
        }
        let h = (v as f64 * plot_h / top as f64).max(1.0);
        out.push((s, base, h));
        base += h;
    }
    out
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIES: [Series; 2] = [
        Series {
            key: "sent",
            label: "sent",
            colour: "#2e7d32",
        },
        Series {
            key: "failed",
            label: "failed",
            colour: "#e53935",
        },
    ];

    fn days(values: &[[u64; 2]]) -> Vec<DayBar> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| DayBar {
                key: format!("d{i}"),
                label: format!("{i}"),
                values: v.to_vec(),
            })
            .collect()
    }

    #[test]
    fn the_axis_is_round_and_covers_the_biggest_day() {
        assert_eq!(axis(0), (1, 4));
        assert_eq!(axis(1), (1, 1));
        assert_eq!(axis(7), (2, 8));
        assert_eq!(axis(40), (10, 40));
        assert_eq!(axis(41), (20, 60));
        assert_eq!(axis(1_000_000), (500_000, 1_000_000));
        for max in [1u64, 3, 9, 99, 101, 12_345, u64::MAX / 3] {
            let (step, top) = axis(max);
            assert!(
                top >= max && step > 0 && top / step <= 5,
                "{max}: {step} {top}"
            );
        }
        assert_eq!(
            (
                compact(999),
                compact(1_000),
                compact(1_250),
                compact(2_500_000)
            ),
            ("999".into(), "1k".into(), "1.2k".into(), "2.5M".into())
        );
    }

    #[test]
    fn all_zeros_draw_an_axis_and_a_table_of_zeros() {
        let html = stacked_bars("c", "Calls", &days(&[[0, 0], [0, 0]]), &SERIES).into_string();
        assert!(
            html.contains("role=\"img\"") && html.contains("None in these 2 days."),
            "{html}"
        );
        assert!(!html.contains("<rect"), "no bars: {html}");
        assert!(
            html.contains("<caption>Calls</caption>") && html.contains("data-series=\"failed\">0<")
        );
    }

    #[test]
    fn one_huge_day_leaves_the_others_visible_and_exact_in_the_table() {
        let html = stacked_bars(
            "c",
            "Calls",
            &days(&[[1, 0], [5_000_000, 2], [0, 3]]),
            &SERIES,
        )
        .into_string();
        assert_eq!(html.matches("<rect").count(), 4, "{html}");
        assert!(
            !html.contains("height=\"0.0\""),
            "every value drawn: {html}"
        );
        assert!(html.contains("data-series=\"sent\">5000000<") && html.contains(">5M<"));
        assert!(html.contains("data-total>5000002<"), "{html}");
    }

    #[test]
    fn series_with_nothing_are_left_out() {
        let html = stacked_bars("c", "Calls", &days(&[[4, 0]]), &SERIES).into_string();
        assert!(html.contains("data-series=\"sent\"") && !html.contains("data-series=\"failed\""));
    }
}
