//! Deploy plans: the rules of a directory against the rules a server has deployed, by name
//! and content hash.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Rule;

/// What a deploy does to one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// New here: deploy it.
    Add,
    /// Different here: replace it.
    Change,
    /// Gone here: stop and remove it.
    Remove,
    /// The same here and there.
    Unchanged,
}

/// One line of a deploy plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedChange {
    /// The rule.
    pub name: String,
    /// What happens to it.
    pub change: Change,
    /// The hash deployed now, if any.
    pub deployed: Option<String>,
    /// The hash here, if any.
    pub local: Option<String>,
}

/// Compares local rules with deployed ones (name → hash); one entry per rule in name order.
pub fn plan(local: &[Rule], deployed: &BTreeMap<String, String>) -> Vec<PlannedChange> {
    let mut plan: BTreeMap<String, PlannedChange> = BTreeMap::new();
    for rule in local {
        let hash = rule.hash();
        let change = match deployed.get(&rule.name) {
            None => Change::Add,
            Some(there) if *there == hash => Change::Unchanged,
            Some(_) => Change::Change,
        };
        plan.insert(
            rule.name.clone(),
            PlannedChange {
                name: rule.name.clone(),
                change,
                deployed: deployed.get(&rule.name).cloned(),
                local: Some(hash),
            },
        );
    }
    for (name, hash) in deployed {
        plan.entry(name.clone()).or_insert_with(|| PlannedChange {
            name: name.clone(),
            change: Change::Remove,
            deployed: Some(hash.clone()),
            local: None,
        });
    }
    plan.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, sql: &str) -> Rule {
        Rule {
            name: name.into(),
            path: format!("{name}.sql").into(),
            sql: sql.into(),
        }
    }

    #[test]
    fn rules_are_added_changed_removed_or_left() {
        let local = [rule("a", "A"), rule("b", "B2"), rule("c", "C")];
        let deployed: BTreeMap<String, String> = [
            ("b".to_string(), rule("b", "B1").hash()),
            ("c".to_string(), rule("c", "C").hash()),
            ("d".to_string(), rule("d", "D").hash()),
        ]
        .into();
        let changes: Vec<(String, Change)> = plan(&local, &deployed)
            .into_iter()
            .map(|p| (p.name, p.change))
            .collect();
        assert_eq!(
            changes,
            [
                ("a".to_string(), Change::Add),
                ("b".to_string(), Change::Change),
                ("c".to_string(), Change::Unchanged),
                ("d".to_string(), Change::Remove),
            ]
        );
    }
}
