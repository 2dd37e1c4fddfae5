//! `vigil deploy DIR --server URL`: a rules directory against what a running `vigil serve`
//! has, as `terraform plan` shows it: per rule added, changed (with a diff of its SQL) or
//! removed, what becomes of each sink's state, the profile's sources and sinks the server
//! lacks (`--with-profile`), and queries started by hand (drift). A rule that does not plan
//! stops the deploy before anything changes. `--apply` carries the plan out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use vigil_engine::sql::{Statement, StreamParser};
use vigil_rules::deploy::{Change, PlannedChange, plan};
use vigil_rules::diff::text_diff;
use vigil_rules::{Rule, RulesDir};

use crate::client::ServerClient;

/// The error a plan-only deploy ends with when the server differs from the directory:
/// `main` turns it into exit code 2, as `terraform plan -detailed-exitcode` does.
#[derive(Debug)]
pub struct ChangesPending(pub usize);

impl fmt::Display for ChangesPending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} change(s) pending; run again with --apply to carry them out",
            self.0
        )
    }
}

impl std::error::Error for ChangesPending {}

/// What `vigil deploy` was asked.
pub struct DeployArgs<'a> {
    /// The rules directory.
    pub dir: &'a Path,
    /// The server's URL.
    pub server: &'a str,
    /// Carry the plan out.
    pub apply: bool,
    /// Deploy this profile's sources and sinks where the server lacks them.
    pub with_profile: Option<&'a str>,
}

#[derive(Deserialize)]
struct DeployedRule {
    name: String,
    hash: String,
    #[serde(default)]
    sql: String,
    #[serde(default)]
    queries: Vec<u64>,
}

#[derive(Deserialize)]
struct RulesResponse {
    rules: Vec<DeployedRule>,
}

/// A source or sink of the profile, and whether the server has it.
struct Declaration {
    kind: &'static str,
    name: String,
    sql: String,
    on_server: bool,
}

/// A persistent query that no deployed rule started.
struct Drift {
    id: u64,
    name: String,
}

/// The whole plan, before anything is carried out.
struct DeployPlan {
    declarations: Vec<Declaration>,
    changes: Vec<PlannedChange>,
    /// Per rule added or changed: what its sinks' state does, or why it does not plan.
    planned: BTreeMap<String, Result<String, String>>,
    drift: Vec<Drift>,
    /// The text of each deployed rule, for the diffs.
    deployed_sql: BTreeMap<String, String>,
}

impl DeployPlan {
    fn pending(&self) -> usize {
        let declarations = self.declarations.iter().filter(|d| !d.on_server).count();
        let rules = self
            .changes
            .iter()
            .filter(|c| c.change != Change::Unchanged)
            .count();
        declarations + rules
    }

    fn refused(&self) -> Vec<&str> {
        self.planned
            .iter()
            .filter(|(_, p)| p.is_err())
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The profile declarations the server lacks, as one script.
    fn missing_declarations(&self) -> Option<String> {
        let missing: Vec<&str> = self
            .declarations
            .iter()
            .filter(|d| !d.on_server)
            .map(|d| d.sql.as_str())
            .collect();
        (!missing.is_empty()).then(|| format!("{};", missing.join(";\n")))
    }
}

/// `vigil deploy`: shows the plan; with `--apply` carries it out. Without `--apply` a
/// pending change ends in [`ChangesPending`].
pub async fn deploy(args: DeployArgs<'_>) -> Result<()> {
    let client = ServerClient::new(args.server)?;
    let dir = RulesDir::new(args.dir);
    let local = dir.rules()?;
    let plan = make_plan(&client, &dir, &local, args.with_profile).await?;
    println!("deploy plan for {}:", args.server);
    print_plan(&plan, &local);
    let refused = plan.refused();
    if !refused.is_empty() {
        bail!(
            "{} rule(s) do not plan ({}); nothing was deployed",
            refused.len(),
            refused.join(", ")
        );
    }
    let pending = plan.pending();
    if pending == 0 && plan.drift.is_empty() {
        println!("nothing to do");
        return Ok(());
    }
    if !args.apply {
        return Err(ChangesPending(pending + plan.drift.len()).into());
    }
    apply(&client, &plan, &local).await
}

async fn make_plan(
    client: &ServerClient,
    dir: &RulesDir,
    local: &[Rule],
    with_profile: Option<&str>,
) -> Result<DeployPlan> {
    let deployed: RulesResponse = client.get_json("/v1/rules").await?;
    let declarations = match with_profile {
        Some(name) => profile_declarations(client, &dir.profile(name)?).await?,
        None => Vec::new(),
    };
    let hashes: BTreeMap<String, String> = deployed
        .rules
        .iter()
        .map(|r| (r.name.clone(), r.hash.clone()))
        .collect();
    let mut plan = DeployPlan {
        declarations,
        changes: plan(local, &hashes),
        planned: BTreeMap::new(),
        drift: drift(client, &deployed.rules).await?,
        deployed_sql: deployed
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.sql.clone()))
            .collect(),
    };
    let profile = plan.missing_declarations();
    for change in &plan.changes {
        if !matches!(change.change, Change::Add | Change::Change) {
            continue;
        }
        let rule = local
            .iter()
            .find(|r| r.name == change.name)
            .expect("added and changed rules are local");
        let planned = plan_rule(client, rule, profile.as_deref()).await;
        plan.planned.insert(change.name.clone(), planned);
    }
    Ok(plan)
}

/// The sources and sinks a profile declares, each marked with whether the server has one
/// of that name.
async fn profile_declarations(client: &ServerClient, path: &Path) -> Result<Vec<Declaration>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let statements = StreamParser::parse_sql(&text)
        .map_err(|e| anyhow::anyhow!(e.report(&path.display().to_string(), &text)))?;
    let catalog: Value = client.get_json("/v1/catalog").await?;
    let names = |kind: &str| -> BTreeSet<String> {
        let objects = catalog[kind]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        objects
            .iter()
            .filter_map(|o| o["name"].as_str().map(str::to_ascii_lowercase))
            .collect()
    };
    let (sources, sinks) = (names("sources"), names("sinks"));
    let mut declarations = Vec::new();
    for statement in statements {
        let (kind, name, known) = match &statement.statement {
            Statement::CreateSource(s) => ("source", s.name.value.clone(), &sources),
            Statement::CreateSink(s) if s.query.is_none() => ("sink", s.name.value.clone(), &sinks),
            _ => bail!(
                "{}: a profile declares sources and sinks only; this is not one: {}",
                path.display(),
                statement.sql.lines().next().unwrap_or_default()
            ),
        };
        declarations.push(Declaration {
            kind,
            on_server: known.contains(&name.to_ascii_lowercase()),
            name,
            sql: statement.sql,
        });
    }
    Ok(declarations)
}

/// The persistent queries running on the server that no deployed rule started: made
/// through `/v1/statements` or the REPL, they are not in the rules directory.
async fn drift(client: &ServerClient, rules: &[DeployedRule]) -> Result<Vec<Drift>> {
    let queries: Value = client.get_json("/v1/queries").await?;
    let owned: BTreeSet<u64> = rules.iter().flat_map(|r| r.queries.clone()).collect();
    let queries = queries["queries"].as_array().cloned().unwrap_or_default();
    Ok(queries
        .iter()
        .filter(|q| q["kind"] == "persistent" && q["status"]["state"] == "running")
        .filter_map(|q| Some((q["id"].as_u64()?, q["name"].as_str()?.to_string())))
        .filter(|(id, _)| !owned.contains(id))
        .map(|(id, name)| Drift { id, name })
        .collect())
}

/// The server's plan for one rule: what its sinks' state does, or why it does not plan.
async fn plan_rule(
    client: &ServerClient,
    rule: &Rule,
    profile: Option<&str>,
) -> Result<String, String> {
    let body = json!({ "sql": rule.sql, "profile": profile });
    match client
        .post_json(&format!("/v1/rules/{}/plan", rule.name), &body)
        .await
    {
        Ok(plan) => Ok(describe_states(&plan["sinks"])),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// A list of the server's sink states (`[{sink, state, epoch}]`), for people; the sinks
/// that do not checkpoint are left out.
fn describe_states(sinks: &Value) -> String {
    let sinks = sinks.as_array().map(Vec::as_slice).unwrap_or_default();
    let described: Vec<String> = sinks
        .iter()
        .filter(|s| s["state"] != "not durable")
        .map(|s| {
            let epoch = s["epoch"]
                .as_u64()
                .map(|e| format!(" (epoch {e})"))
                .unwrap_or_default();
            let state = s["state"].as_str().unwrap_or("?");
            format!("{state}: {}{epoch}", s["sink"].as_str().unwrap_or("?"))
        })
        .collect();
    described.join("; ")
}

fn short(hash: &Option<String>) -> String {
    hash.as_deref()
        .map(|h| h.trim_start_matches("sha256:").chars().take(12).collect())
        .unwrap_or_default()
}

fn print_line(mark: char, name: &str, word: &str, detail: &str) {
    let line = format!("  {mark} {name:<24} {word:<10} {detail}");
    println!("{}", line.trim_end());
}

fn print_plan(plan: &DeployPlan, local: &[Rule]) {
    for declaration in &plan.declarations {
        let name = format!("{} {}", declaration.kind, declaration.name);
        match declaration.on_server {
            true => print_line('=', &name, "present", "(profile)"),
            false => print_line('+', &name, "add", "(profile)"),
        }
    }
    for change in &plan.changes {
        print_change(plan, change, local);
    }
    for drift in &plan.drift {
        let name = format!("query {}", drift.id);
        let detail = format!(
            "writes {}; started by hand (POST /v1/statements), not by a rule here: \
             left running",
            drift.name
        );
        print_line('?', &name, "drift", &detail);
    }
}

fn print_change(plan: &DeployPlan, change: &PlannedChange, local: &[Rule]) {
    let planned = plan.planned.get(&change.name);
    let (mark, word, hashes) = match (change.change, planned) {
        (_, Some(Err(_))) => ('!', "refused", short(&change.local)),
        (Change::Add, _) => ('+', "add", short(&change.local)),
        (Change::Change, _) => (
            '~',
            "change",
            format!("{} -> {}", short(&change.deployed), short(&change.local)),
        ),
        (Change::Remove, _) => ('-', "remove", short(&change.deployed)),
        (Change::Unchanged, _) => ('=', "unchanged", short(&change.deployed)),
    };
    let detail = match planned {
        Some(Ok(states)) => format!("{hashes}  {states}"),
        Some(Err(why)) => format!("{hashes}  does not plan: {why}"),
        None => hashes,
    };
    print_line(mark, &change.name, word, &detail);
    if change.change == Change::Change
        && let Some(rule) = local.iter().find(|r| r.name == change.name)
    {
        let before = plan
            .deployed_sql
            .get(&change.name)
            .map_or("", String::as_str);
        println!("{}", text_diff(before, &rule.sql, "      "));
    }
}

async fn apply(client: &ServerClient, plan: &DeployPlan, local: &[Rule]) -> Result<()> {
    if let Some(script) = plan.missing_declarations() {
        client
            .post_json("/v1/statements", &json!({ "sql": script }))
            .await
            .context("declaring the profile's sources and sinks")?;
        for declaration in plan.declarations.iter().filter(|d| !d.on_server) {
            println!("declared {} {}", declaration.kind, declaration.name);
        }
    }
    let rules: BTreeMap<&str, &Rule> = local.iter().map(|r| (r.name.as_str(), r)).collect();
    for change in plan
        .changes
        .iter()
        .filter(|c| c.change != Change::Unchanged)
    {
        let path = format!("/v1/rules/{}", change.name);
        if change.change == Change::Remove {
            client.delete(&path).await?;
            println!("removed {}", change.name);
            continue;
        }
        let rule = rules[change.name.as_str()];
        let answer = client
            .put_json(&path, &json!({ "sql": rule.sql }))
            .await
            .with_context(|| format!("deploying {}", rule.path.display()))?;
        report_deployed(change, &answer);
    }
    Ok(())
}

fn report_deployed(change: &PlannedChange, answer: &Value) {
    let queries = answer["rule"]["queries"].to_string();
    let stopped = answer["stopped"].to_string();
    let state = match describe_states(&answer["state"]) {
        described if described.is_empty() => described,
        described => format!("; {described}"),
    };
    match change.change {
        Change::Add => println!("added {} (queries {queries}{state})", change.name),
        _ => println!(
            "changed {} (queries {queries} started, {stopped} stopped{state})",
            change.name
        ),
    }
}
