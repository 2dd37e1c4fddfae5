//! `vigil check`, `vigil test` and `vigil fmt`: rule files handled like code (`vigil deploy`
//! is in [`crate::deploy`]).

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use vigil_connectors::kafka::KafkaSettings;
use vigil_engine::Engine;
use vigil_rules::RulesDir;
use vigil_rules::check::{self, CheckPlan, Severity};
use vigil_rules::diff::text_diff;
use vigil_rules::fmt::format_sql;
use vigil_rules::layout::Fingerprint;
use vigil_rules::lints::Lint;
use vigil_rules::runner::{Selection, run_directory};

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
    allow: &[String],
) -> Result<()> {
    let mut plan = match paths {
        [dir] if dir.is_dir() => CheckPlan::directory(&RulesDir::new(dir), profile)?,
        files => check::plan_for_files(files, profile)?,
    };
    plan.allow = allow
        .iter()
        .filter_map(|name| Lint::from_name(name))
        .collect();
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

/// What `vigil test` was asked.
pub struct TestArgs {
    /// The rules directory.
    pub dir: PathBuf,
    /// Only these rules' tests.
    pub names: Vec<String>,
    /// Only cases whose `rule: case` contains this.
    pub filter: Option<String>,
    /// The profile declaring the sources and sinks.
    pub profile: Option<String>,
    /// JUnit XML on stdout instead of a report for people.
    pub junit: bool,
    /// Run again whenever a rule, profile or test file changes.
    pub watch: bool,
}

/// `vigil test DIR [NAME...]`: the selected `tests/*.test` of a rules directory, once or
/// (`--watch`) after every change.
pub async fn test(kafka: KafkaSettings, args: &TestArgs) -> Result<()> {
    let new_engine = engine_factory(kafka);
    if !args.watch {
        return test_once(&new_engine, args).await;
    }
    let dir = RulesDir::new(&args.dir);
    loop {
        let seen = dir.fingerprint();
        if let Err(e) = test_once(&new_engine, args).await {
            eprintln!("{e:#}");
        }
        eprintln!(
            "watching {} for changes (Ctrl-C to stop)",
            args.dir.display()
        );
        wait_for_change(&dir, seen).await;
    }
}

/// Returns once the directory's files differ from `seen` and have stayed the same for one
/// poll: an editor's save (or a truncate and write) is seen whole, not half written.
async fn wait_for_change(dir: &RulesDir, seen: Fingerprint) {
    let mut last = seen.clone();
    loop {
        tokio::time::sleep(WATCH_POLL).await;
        let now = dir.fingerprint();
        if now != seen && now == last {
            return;
        }
        last = now;
    }
}

/// How often `vigil test --watch` looks for saved files.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(250);

async fn test_once(new_engine: &dyn Fn() -> Engine, args: &TestArgs) -> Result<()> {
    let rules = RulesDir::new(&args.dir);
    let profile = match &args.profile {
        Some(name) => Some(rules.profile(name)?),
        None => rules.default_test_profile()?,
    };
    if rules.test_paths()?.is_empty() {
        bail!(
            "no rule tests in {} (tests/NAME.test tests NAME.sql)",
            args.dir.join("tests").display()
        );
    }
    let selection = Selection {
        rules: args.names.clone(),
        filter: args.filter.clone(),
    };
    let report = run_directory(new_engine, &rules, profile.as_deref(), &selection).await?;
    if args.junit {
        print!("{}", report.junit());
        eprintln!("{} passed, {} failed", report.passed(), report.failed());
    } else {
        print!("{}", report.text());
    }
    if report.passed() + report.failed() == 0 {
        bail!("no test case matches the selection");
    }
    if report.failed() > 0 {
        bail!("{} rule test(s) failed", report.failed());
    }
    Ok(())
}

/// `vigil fmt PATHS [--check]`: files, or every rule and profile of a directory; `-`
/// formats stdin to stdout. `--check` changes nothing and shows what would change.
pub fn fmt(paths: &[PathBuf], check_only: bool) -> Result<()> {
    if let [path] = paths
        && path.as_os_str() == "-"
    {
        return fmt_stdin(check_only);
    }
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
    let mut unformatted = 0;
    for file in &files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let formatted = format_sql(&text).with_context(|| format!("{}", file.display()))?;
        if formatted == text {
            continue;
        }
        unformatted += 1;
        if check_only {
            println!("would reformat {}", file.display());
            println!("{}", text_diff(&text, &formatted, "  "));
        } else {
            std::fs::write(file, &formatted)
                .with_context(|| format!("cannot write {}", file.display()))?;
            println!("formatted {}", file.display());
        }
    }
    if check_only && unformatted > 0 {
        bail!(
            "{unformatted} of {} file(s) are not formatted: run vigil fmt on them",
            files.len()
        );
    }
    Ok(())
}

/// `vigil fmt -`: stdin formatted to stdout, for editors; with `--check`, the diff.
fn fmt_stdin(check_only: bool) -> Result<()> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read stdin")?;
    let formatted = format_sql(&text).context("stdin")?;
    if !check_only {
        print!("{formatted}");
        return Ok(());
    }
    if formatted != text {
        println!("{}", text_diff(&text, &formatted, "  "));
        bail!("stdin is not formatted");
    }
    Ok(())
}
