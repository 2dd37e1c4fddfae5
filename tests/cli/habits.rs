//! What people type on day one: a closed pipe, `--version`, shell completions, logs for
//! machines.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{vigil, workspace};

#[test]
fn a_demo_piped_into_head_exits_quietly_once_head_has_gone() {
    // `vigil demo | head -n 3`, with the test as `head`: read three lines, close the pipe.
    let mut demo = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vigil demo starts");
    let mut stdout = BufReader::new(demo.stdout.take().unwrap());
    for _ in 0..3 {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the demo prints");
    }
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo runs on after its reader left"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(demo.stderr.take().unwrap()).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("broken pipe"), "{stderr}");
}

#[test]
fn version_and_shell_completions() {
    let dir = workspace();
    let out = vigil(&dir, &["--version"]);
    assert!(out.status.success());
    let version = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        version.trim(),
        format!("vigil {}", env!("CARGO_PKG_VERSION"))
    );
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef vigil"),
        ("fish", "complete -c vigil"),
    ] {
        let out = vigil(&dir, &["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        // Subcommands are in it.
        assert!(script.contains("deploy"), "{shell}");
    }
}

#[test]
fn logs_honour_rust_log_and_come_as_json_lines_without_colours() {
    let dir = super::scratch("logs");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(&dir)
        // --reset-state logs, at info, that it deleted the checkpoints.
        .args([
            "--log-format",
            "json",
            "run",
            "--state-dir",
            "state",
            "--reset-state",
        ])
        .arg(super::profile())
        .arg(super::rule("sensor_threshold.sql"))
        .env_remove("VIGIL_LOG")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains('\x1b'), "colours in a pipe: {stderr}");
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    assert!(
        logs.iter().any(|l| l["level"] == "INFO"),
        "RUST_LOG=info shows info lines: {stderr}"
    );
    assert!(logs.iter().all(|l| l["fields"].is_object()), "{stderr}");
}
