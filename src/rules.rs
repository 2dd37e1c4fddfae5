//! `vigil check`, `vigil test`, `vigil fmt` and `vigil deploy`: rule files handled like code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use vigil_connectors::kafka::KafkaSettings;
use vigil_engine::Engine;
use vigil_rules::check::{self, CheckPlan, Severity};
use vigil_rules::deploy::{Change, plan};
use vigil_rules::fixture::TestFile;
use vigil_rules::fmt::format_sql;
use vigil_rules::runner::run_test_file;
use vigil_rules::{Rule, RulesDir};

use crate::client::ServerClient;

/// Engines that plan only: connectors check their options and never connect.
fn engine_factory(kafka: KafkaSettings) -> impl Fn() -> Engine {
    move || {
        let mut engine = Engine::new(vigil_connectors::registry_with(kafka.clone()));
        engine.config_mut().start_queries = false;
        engine
    }
}

/// `vigil check PATHS`: a rules directory, or rule files with their directory's profiles.
pub async fn check(
    kafka: KafkaSettings,
    paths: &[PathBuf],
    profile: Option<&str>,
    json: bool,
) -> Result<()> {
    let plan = match paths {
        [dir] if dir.is_dir() => CheckPlan::directory(&RulesDir::new(dir), profile)?,
        files => check::plan_for_files(files, profile)?,
    };
    if plan.rules.is_empty() {
        bail!("no rule files to check (a rules directory holds *.sql rules and profiles/)");
    }
    let new_engine = engine_factory(kafka);
    let diagnostics = check::check(&new_engine, &plan).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&diagnostics)?);
    } else {
        for diagnostic in &diagnostics {
            println!("{diagnostic}");
        }
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    eprintln!(
        "checked {} rule file(s) with {} profile(s): {errors} error(s), {warnings} warning(s)",
        plan.rules.len(),
        plan.profiles.len()
    );
    if errors > 0 {
        bail!("check failed");
    }
    Ok(())
}

/// `vigil test DIR`: every `tests/*.test` of a rules directory.
pub async fn test(kafka: KafkaSettings, dir: &Path, profile: Option<&str>) -> Result<()> {
    let rules = RulesDir::new(dir);
    let profile = match profile {
        Some(name) => Some(rules.profile(name)?),
        None => rules.default_test_profile()?,
    };
    let tests = rules.test_paths()?;
    if tests.is_empty() {
        bail!(
            "no rule tests in {} (tests/NAME.test tests NAME.sql)",
            dir.join("tests").display()
        );
    }
    let new_engine = engine_factory(kafka);
    let (mut passed, mut failed) = (0, 0);
    let mut tested = Vec::new();
    for path in &tests {
        let rule_path = rules.rule_of_test(path);
        let rule = Rule::read(&rule_path).with_context(|| {
            format!("{}: tests a rule file that cannot be read", path.display())
        })?;
        let file = TestFile::read(path)?;
        for outcome in run_test_file(&new_engine, profile.as_deref(), &rule, &file).await? {
            if outcome.passed() {
                passed += 1;
                println!("ok    {}: {}", outcome.location, outcome.name);
            } else {
                failed += 1;
                println!("FAIL  {}: {}", outcome.location, outcome.name);
                for failure in &outcome.failures {
                    for line in failure.lines() {
                        println!("      {line}");
                    }
                }
            }
        }
        tested.push(rule.name);
    }
    for path in rules.rule_paths()? {
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        if !tested.iter().any(|t| *t == name) {
            eprintln!("warning: rule {name} has no tests (tests/{name}.test)");
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} rule test(s) failed");
    }
    Ok(())
}

/// `vigil fmt PATHS [--check]`: files, or every rule and profile of a directory.
pub fn fmt(paths: &[PathBuf], check_only: bool) -> Result<()> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let dir = RulesDir::new(path);
            files.extend(dir.profile_paths()?);
            files.extend(dir.rule_paths()?);
        } else {
            files.push(path.clone());
        }
    }
    let mut unformatted = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let formatted = format_sql(&text).with_context(|| format!("{}", file.display()))?;
        if formatted == text {
            continue;
        }
        if check_only {
            println!("would reformat {}", file.display());
        } else {
            std::fs::write(file, &formatted)
                .with_context(|| format!("cannot write {}", file.display()))?;
            println!("formatted {}", file.display());
        }
        unformatted.push(file);
    }
    if check_only && !unformatted.is_empty() {
        bail!(
            "{} of {} file(s) are not formatted: run vigil fmt on them",
            unformatted.len(),
            files.len()
        );
    }
    Ok(())
}

/// A rule as `GET /v1/rules` lists it.
#[derive(Deserialize)]
struct DeployedRule {
    name: String,
    hash: String,
}

#[derive(Deserialize)]
struct RulesResponse {
    rules: Vec<DeployedRule>,
}

/// What deploying `rule` does to its sinks' checkpointed state, as the server plans it:
/// `state kept: sink (epoch N)`, `state reset: ...`, `new state: ...`; nothing for sinks
/// that do not checkpoint (a server without a state dir).
async fn state_of(client: &ServerClient, name: &str, rule: Option<&Rule>) -> String {
    let Some(rule) = rule else {
        return String::new();
    };
    let body = serde_json::json!({ "sql": rule.sql });
    let plan = match client
        .post_json(&format!("/v1/rules/{name}/plan"), &body)
        .await
    {
        Ok(plan) => plan,
        Err(e) => return format!("does not plan: {e:#}"),
    };
    describe_states(&plan["sinks"])
}

/// A list of the server's sink states (`[{sink, state, epoch}]`), for people; the sinks
/// that do not checkpoint are left out.
fn describe_states(sinks: &serde_json::Value) -> String {
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

/// `vigil deploy DIR --server URL [--apply]`: the plan against the server's rules, carried
/// out with --apply.
pub async fn deploy(dir: &Path, server: &str, apply: bool) -> Result<()> {
    let client = ServerClient::new(server)?;
    let local = RulesDir::new(dir).rules()?;
    let deployed: RulesResponse = client.get_json("/v1/rules").await?;
    let deployed: BTreeMap<String, String> = deployed
        .rules
        .into_iter()
        .map(|r| (r.name, r.hash))
        .collect();
    let changes = plan(&local, &deployed);
    println!("deploy plan for {server}:");
    let short = |hash: &Option<String>| {
        hash.as_deref()
            .map(|h| {
                h.trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect::<String>()
            })
            .unwrap_or_default()
    };
    for change in &changes {
        let (mark, word) = match change.change {
            Change::Add => ('+', "add"),
            Change::Change => ('~', "change"),
            Change::Remove => ('-', "remove"),
            Change::Unchanged => ('=', "unchanged"),
        };
        let hashes = match change.change {
            Change::Add => short(&change.local),
            Change::Change => format!("{} -> {}", short(&change.deployed), short(&change.local)),
            Change::Remove | Change::Unchanged => short(&change.deployed),
        };
        let state = match change.change {
            Change::Add | Change::Change => {
                let rule = local.iter().find(|r| r.name == change.name);
                state_of(&client, &change.name, rule).await
            }
            Change::Remove | Change::Unchanged => String::new(),
        };
        let line = format!("  {mark} {:<24} {word:<10} {hashes}  {state}", change.name);
        println!("{}", line.trim_end());
    }
    let pending = changes
        .iter()
        .filter(|c| c.change != Change::Unchanged)
        .count();
    if pending == 0 {
        println!("nothing to do");
        return Ok(());
    }
    if !apply {
        println!("{pending} change(s); run again with --apply to carry them out");
        return Ok(());
    }
    let rules: BTreeMap<&str, &Rule> = local.iter().map(|r| (r.name.as_str(), r)).collect();
    for change in changes.iter().filter(|c| c.change != Change::Unchanged) {
        let path = format!("/v1/rules/{}", change.name);
        if change.change == Change::Remove {
            client.delete(&path).await?;
            println!("removed {}", change.name);
            continue;
        }
        let rule = rules[change.name.as_str()];
        let answer = client
            .put_json(&path, &serde_json::json!({ "sql": rule.sql }))
            .await
            .with_context(|| format!("deploying {}", rule.path.display()))?;
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
    Ok(())
}
