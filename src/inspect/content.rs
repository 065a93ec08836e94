//! Content rules (DETECTION.md §4.6): what the tables and texts of a message add up to.
//!
//! Each part (a body, a sheet, a document, a table found in text) is analysed on its own;
//! the rules then look at every part and at the message as a whole. Findings say where
//! (part, sheet, rows or lines), what kinds of data and how many records — never the values.

use std::collections::BTreeSet;

use super::extract::{Extracted, Item, Location, ProblemKind, TextKind};
use super::lexicon::Class;
use super::{prose, table};
use crate::envelope::{domain_of, is_internal};
use crate::policy::Policy;
use crate::verdict::{Action, Finding, HoldReason};

/// What one part contains.
#[derive(Debug, Clone, Default)]
pub struct PartResult {
    pub loc: Location,
    pub records: usize,
    /// `rows 4-63` / `lines 12-40`.
    pub span: Option<String>,
    pub kinds: BTreeSet<Class>,
    pub my_numbers_context: usize,
    pub my_numbers_column: usize,
    pub credential_pairs: usize,
    pub emails: Vec<String>,
    /// Personal identifiers (for the cross-recipient check; hashed before leaving inspect).
    pub identifiers: Vec<String>,
}

impl PartResult {
    fn place(&self) -> String {
        match &self.span {
            Some(s) => format!("{}, {s}", self.loc.describe()),
            None => self.loc.describe(),
        }
    }
}

fn from_table(loc: Location, rows: &[Vec<String>], this_year: i32) -> PartResult {
    let a = table::analyze(rows, &table::Ctx { this_year });
    PartResult {
        loc,
        records: a.records,
        span: a.rows.map(|(x, y)| format!("rows {x}-{y}")),
        kinds: a.columns.into_iter().collect(),
        my_numbers_column: a.my_numbers,
        credential_pairs: a.credential_pairs,
        emails: a.emails,
        ..PartResult::default()
    }
}

/// Analyses every extracted item.
/// The results per text and table, and whether every one was analysed before `deadline`
/// (false: the inspection took too long; the caller holds the message as `uninspectable`).
pub fn analyze(
    ex: &Extracted,
    this_year: i32,
    deadline: std::time::Instant,
) -> (Vec<PartResult>, bool) {
    let mut parts = Vec::new();
    for item in &ex.items {
        if std::time::Instant::now() >= deadline {
            return (parts, false);
        }
        match item {
            Item::Text {
                kind: TextKind::Calendar,
                ..
            } => {}
            Item::Text { loc, text, .. } => {
                let Some(a) = prose::analyze_until(text, this_year, deadline) else {
                    return (parts, false);
                };
                for (n, rows) in a.tables.iter().enumerate() {
                    parts.push(from_table(
                        loc.with_sub(format!("table {} in the text", n + 1)),
                        rows,
                        this_year,
                    ));
                }
                parts.push(PartResult {
                    loc: loc.clone(),
                    records: a.records,
                    span: a.lines.map(|(x, y)| format!("lines {x}-{y}")),
                    kinds: a.kinds,
                    my_numbers_context: a.my_numbers,
                    credential_pairs: a.credential_pairs,
                    emails: a.emails,
                    identifiers: a.identifiers.into_iter().collect(),
                    ..PartResult::default()
                });
            }
            Item::Table { loc, rows } => parts.push(from_table(loc.clone(), rows, this_year)),
        }
    }
    (parts, true)
}

/// `count` summed over the message's parts, counting each multipart/alternative once: the
/// larger of its plain side and its HTML side (the same letter, rendered twice).
fn message_total(parts: &[PartResult], count: impl Fn(&PartResult) -> usize) -> usize {
    use std::collections::BTreeMap;
    let mut total = 0usize;
    // group → (plain side, html side)
    let mut sides: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for p in parts {
        let n = count(p);
        match p.loc.alternative {
            None => total = total.saturating_add(n),
            Some(alt) => {
                let e = sides.entry(alt.group).or_default();
                let side = if alt.html { &mut e.1 } else { &mut e.0 };
                *side = side.saturating_add(n);
            }
        }
    }
    sides
        .values()
        .fold(total, |t, (plain, html)| t.saturating_add(*plain.max(html)))
}

fn kinds_words(kinds: &BTreeSet<Class>) -> Vec<String> {
    kinds.iter().map(|k| k.as_str().to_string()).collect()
}

fn finding(
    reason: HoldReason,
    action: Action,
    summary: String,
    location: String,
    count: usize,
    columns: Vec<String>,
) -> Finding {
    Finding {
        reason,
        action,
        summary,
        location,
        count: Some(count as u64),
        columns,
    }
}

/// The content findings of a message.
pub fn findings(parts: &[PartResult], ex: &Extracted, policy: &Policy) -> Vec<Finding> {
    let mut out = Vec::new();
    personal_data(parts, policy, &mut out);
    address_list(parts, policy, &mut out);
    my_number(parts, policy, &mut out);
    credentials(parts, policy, &mut out);
    for p in ex.problems.iter().take(20) {
        let action = if p.kind == ProblemKind::NoText {
            policy.uninspectable.no_text_action
        } else {
            policy.uninspectable.action
        };
        out.push(Finding {
            reason: HoldReason::Uninspectable,
            action,
            summary: format!("cannot be inspected: {}", p.why),
            location: p.loc.describe(),
            count: None,
            columns: Vec::new(),
        });
    }
    out
}

fn personal_data(parts: &[PartResult], policy: &Policy, out: &mut Vec<Finding>) {
    let rule = &policy.personal_data;
    let over: Vec<&PartResult> = parts
        .iter()
        .filter(|p| p.records > rule.max_records)
        .collect();
    for p in over.iter().take(10) {
        out.push(finding(
            HoldReason::PersonalData,
            rule.action,
            format!(
                "{} personal records ({}) — policy allows {}",
                p.records,
                kinds_words(&p.kinds).join(", "),
                rule.max_records
            ),
            p.place(),
            p.records,
            kinds_words(&p.kinds),
        ));
    }
    if !over.is_empty() {
        return;
    }
    let total = message_total(parts, |p| p.records);
    let with: Vec<&PartResult> = parts.iter().filter(|p| p.records > 0).collect();
    let kinds: BTreeSet<Class> = with.iter().flat_map(|p| p.kinds.iter().copied()).collect();
    let places = with
        .iter()
        .take(3)
        .map(|p| p.place())
        .collect::<Vec<_>>()
        .join("; ");
    if total > rule.max_records {
        out.push(finding(
            HoldReason::PersonalData,
            rule.action,
            format!(
                "{total} personal records across {} parts ({}) — policy allows {}",
                with.len(),
                kinds_words(&kinds).join(", "),
                rule.max_records
            ),
            places,
            total,
            kinds_words(&kinds),
        ));
    } else if total > rule.warn_records {
        out.push(finding(
            HoldReason::PersonalData,
            Action::Warn,
            format!(
                "{total} personal records ({}) — below the hold threshold of {}",
                kinds_words(&kinds).join(", "),
                rule.max_records + 1
            ),
            places,
            total,
            kinds_words(&kinds),
        ));
    }
}

fn address_list(parts: &[PartResult], policy: &Policy, out: &mut Vec<Finding>) {
    let rule = &policy.address_list;
    let internal = &policy.internal_domains;
    let external = |e: &String| domain_of(e).is_some_and(|d| !is_internal(&d, internal));
    let all: BTreeSet<&String> = parts
        .iter()
        .flat_map(|p| p.emails.iter())
        .filter(|e| external(e))
        .collect();
    if all.len() > rule.max_addresses {
        let places = parts
            .iter()
            .filter(|p| p.emails.iter().any(external))
            .take(3)
            .map(|p| p.loc.describe())
            .collect::<Vec<_>>()
            .join("; ");
        out.push(finding(
            HoldReason::AddressList,
            rule.action,
            format!(
                "{} distinct personal e-mail addresses in the content — policy allows {}",
                all.len(),
                rule.max_addresses
            ),
            places,
            all.len(),
            vec!["email".into()],
        ));
    }
}

fn my_number(parts: &[PartResult], policy: &Policy, out: &mut Vec<Finding>) {
    let rule = &policy.my_number;
    for p in parts {
        if p.my_numbers_context > 0 {
            out.push(finding(
                HoldReason::MyNumber,
                rule.action,
                format!(
                    "{} valid My Number(s) next to マイナンバー / 個人番号",
                    p.my_numbers_context
                ),
                p.loc.describe(),
                p.my_numbers_context,
                vec!["my_number".into()],
            ));
        }
        if p.my_numbers_column > rule.max_in_column {
            out.push(finding(
                HoldReason::MyNumber,
                rule.action,
                format!(
                    "{} valid My Numbers in a column of a people table — policy allows {}",
                    p.my_numbers_column, rule.max_in_column
                ),
                p.place(),
                p.my_numbers_column,
                vec!["my_number".into()],
            ));
        }
    }
}

fn credentials(parts: &[PartResult], policy: &Policy, out: &mut Vec<Finding>) {
    let rule = &policy.credentials;
    let total = message_total(parts, |p| p.credential_pairs);
    if total == 0 {
        return;
    }
    let places = parts
        .iter()
        .filter(|p| p.credential_pairs > 0)
        .take(3)
        .map(|p| p.loc.describe())
        .collect::<Vec<_>>()
        .join("; ");
    let action = if total > rule.max_pairs {
        rule.action
    } else if total == 1 {
        rule.single_pair_action
    } else {
        Action::Warn
    };
    out.push(finding(
        HoldReason::Credentials,
        action,
        format!(
            "{total} login id / password pair(s) — policy allows {}",
            rule.max_pairs
        ),
        places,
        total,
        vec!["login_id".into(), "password".into()],
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::extract::Alternative;

    fn part(records: usize, alternative: Option<(usize, bool)>) -> PartResult {
        let mut loc = Location::new("body");
        loc.alternative = alternative.map(|(group, html)| Alternative { group, html });
        PartResult {
            loc,
            records,
            ..PartResult::default()
        }
    }

    #[test]
    fn an_alternative_counts_its_larger_side_once() {
        // The same 6 people in the plain and the HTML body of one alternative: 6, not 12.
        let parts = [part(6, Some((1, false))), part(6, Some((1, true)))];
        assert_eq!(message_total(&parts, |p| p.records), 6);
        // The HTML side's text and its table add up; the larger side wins.
        let parts = [
            part(2, Some((1, false))),
            part(5, Some((1, true))),
            part(4, Some((1, true))),
            part(3, None),
            part(7, Some((2, false))),
        ];
        assert_eq!(message_total(&parts, |p| p.records), 9 + 3 + 7);
    }
}
