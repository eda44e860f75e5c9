//! The funnel's follow-up steps: `contacted` leads per number of follow-ups sent (since
//! their last reply) and `exhausted` leads, with their shares of both together. One
//! grouped query over the leads (`ServiceStore::count_by_follow_ups`).

use crate::lead::LeadState;
use crate::store::StoreError;
use maud::{Markup, html};

/// The last step shown on its own.
const MAX_STEP: usize = 50;

/// Contacted leads per follow-ups sent (index = follow-ups sent), and the exhausted ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Steps {
    pub contacted: Vec<u64>,
    pub exhausted: u64,
}

impl Steps {
    pub async fn read(store: &dyn crate::store::ServiceStore) -> Result<Steps, StoreError> {
        Ok(Steps::from_counts(store.count_by_follow_ups().await?))
    }

    pub fn from_counts(counts: Vec<(LeadState, u32, u64)>) -> Steps {
        let mut steps = Steps::default();
        for (state, sent, n) in counts {
            match state {
                LeadState::Contacted => {
                    // Bounded by the campaign's follow-ups; a stray huge count is shown
                    // at the last step rather than growing the table.
                    let i = (sent as usize).min(MAX_STEP);
                    if steps.contacted.len() <= i {
                        steps.contacted.resize(i + 1, 0);
                    }
                    steps.contacted[i] += n;
                }
                LeadState::Exhausted => steps.exhausted += n,
                _ => {}
            }
        }
        if steps.contacted.is_empty() {
            steps.contacted.push(0);
        }
        steps
    }

    pub fn total(&self) -> u64 {
        self.contacted.iter().sum::<u64>() + self.exhausted
    }
}

fn share(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        n as f64 * 100.0 / total as f64
    }
}

/// The table: one row per follow-up step (`data-step="0"`, ...), then `exhausted`.
pub fn table(steps: &Steps) -> Markup {
    let total = steps.total();
    let row = |key: String, label: String, n: u64| {
        let s = share(n, total);
        html! {
            tr data-step=(key) {
                th scope="row" { (label) }
                td.count { (n) }
                td.share { (format!("{s:.1}%")) }
                td.barcell { (super::chart::bar(s)) }
            }
        }
    };
    html! {
        div.scroll { table {
            caption { (total) " leads in conversation or exhausted, by follow-ups sent since their last reply" }
            thead { tr { th scope="col" { "Step" } th scope="col" { "Leads" } th scope="col" { "Share" } th scope="col" { "" } } }
            tbody {
                @for (i, n) in steps.contacted.iter().enumerate() {
                    (row(i.to_string(), format!("contacted, {i} follow-up{} sent", if i == 1 { "" } else { "s" }), *n))
                }
                (row("exhausted".into(), "exhausted (no reply after the last follow-up)".into(), steps.exhausted))
            }
        } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_become_steps_with_gaps_filled() {
        let s = Steps::from_counts(vec![
            (LeadState::Contacted, 2, 3),
            (LeadState::Contacted, 0, 5),
            (LeadState::Exhausted, 3, 4),
            (LeadState::Exhausted, 2, 1),
        ]);
        assert_eq!(
            s,
            Steps {
                contacted: vec![5, 0, 3],
                exhausted: 5
            }
        );
        assert_eq!(s.total(), 13);
        let html = table(&s).into_string();
        assert!(html.contains("data-step=\"1\"") && html.contains("data-step=\"exhausted\""));
        assert_eq!(Steps::from_counts(vec![]).contacted, vec![0]);
    }
}
