//! [`Settings`]: what `SET`, `RESET` and `SHOW` change and show in a session: how results
//! print and how much each source reads at once.

use vigil_connectors::stdout::StdoutFormat;

/// How an updating SELECT is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultMode {
    /// Every change as a row with its kind in `op` (`+I`, `-U`, `+U`, `-D`).
    Changelog,
    /// The current rows, redrawn in place as they change (Flink's table mode).
    Table,
}

/// A session's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How SELECT rows print: `table` or `json`.
    pub format: StdoutFormat,
    /// How an updating SELECT is shown.
    pub result_mode: ResultMode,
    /// One field per line for each row (`\x`), for wide results.
    pub expanded: bool,
    /// Print how long each statement took (`\timing`).
    pub timing: bool,
    /// Rows per batch the sources read.
    pub batch_size: usize,
    /// How long a join with no time bound keeps a row (`7 days`); `None`: such joins need
    /// inputs keyed by their join keys.
    pub state_ttl: Option<String>,
}

/// Every setting's name, with what it takes.
const NAMES: [(&str, &str); 6] = [
    ("format", "table | json"),
    ("result_mode", "changelog | table"),
    ("expanded", "on | off"),
    ("timing", "on | off"),
    ("batch_size", "rows per source batch"),
    ("state_ttl", "a duration such as 7 days | off"),
];

impl Settings {
    /// Changes setting `name` to `value`.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let value = value.to_ascii_lowercase();
        match canonical(name)? {
            "format" => {
                self.format = match value.as_str() {
                    "table" => StdoutFormat::Table,
                    "json" => StdoutFormat::Json,
                    _ => return Err(wrong("format", &value)),
                }
            }
            "result_mode" => {
                self.result_mode = match value.as_str() {
                    // Flink's tableau mode prints the changes as they come.
                    "changelog" | "tableau" => ResultMode::Changelog,
                    "table" => ResultMode::Table,
                    _ => return Err(wrong("result_mode", &value)),
                }
            }
            "expanded" => self.expanded = on_off("expanded", &value)?,
            "timing" => self.timing = on_off("timing", &value)?,
            "batch_size" => {
                self.batch_size = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| wrong("batch_size", &value))?
            }
            "state_ttl" => {
                self.state_ttl = match value.as_str() {
                    "off" | "none" => None,
                    _ => {
                        vigil_engine::sql::parse_duration(&value)
                            .filter(|d| !d.is_zero())
                            .ok_or_else(|| wrong("state_ttl", &value))?;
                        Some(value)
                    }
                }
            }
            other => unreachable!("canonical() knows no setting {other}"),
        }
        Ok(())
    }

    /// Puts setting `name` back to its value in `defaults`.
    pub fn reset(&mut self, name: &str, defaults: &Settings) -> Result<(), String> {
        let name = canonical(name)?;
        let value = defaults.value(name);
        self.set(name, &value)
    }

    /// The value of setting `name` as `SHOW` prints it.
    pub fn show(&self, name: &str) -> Result<String, String> {
        Ok(self.value(canonical(name)?))
    }

    /// Every setting with its value and what it takes, one per line.
    pub fn show_all(&self) -> String {
        NAMES
            .iter()
            .map(|(name, takes)| format!("  {name:<12} {:<10} ({takes})", self.value(name)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn value(&self, name: &str) -> String {
        let on_off = |on: bool| if on { "on" } else { "off" }.to_string();
        match name {
            "format" => match self.format {
                StdoutFormat::Table => "table".into(),
                StdoutFormat::Json => "json".into(),
            },
            "result_mode" => match self.result_mode {
                ResultMode::Changelog => "changelog".into(),
                ResultMode::Table => "table".into(),
            },
            "expanded" => on_off(self.expanded),
            "timing" => on_off(self.timing),
            "batch_size" => self.batch_size.to_string(),
            "state_ttl" => self.state_ttl.clone().unwrap_or_else(|| "off".into()),
            other => unreachable!("no setting {other}"),
        }
    }
}

/// A setting's name as [`NAMES`] spells it, from it or from the name Flink's SQL client
/// uses for the same thing.
fn canonical(name: &str) -> Result<&'static str, String> {
    let name = match name {
        "sql_client_execution_result_mode" | "execution_result_mode" => "result_mode",
        "output_format" => "format",
        "table_exec_batch_size" => "batch_size",
        "table_exec_state_ttl" => "state_ttl",
        other => other,
    };
    NAMES
        .iter()
        .map(|(known, _)| *known)
        .find(|known| *known == name)
        .ok_or_else(|| {
            let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
            format!("no setting '{name}' (there are {})", known.join(", "))
        })
}

fn on_off(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(wrong(name, value)),
    }
}

fn wrong(name: &str, value: &str) -> String {
    let takes = NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, t)| t);
    format!("{name} takes {takes}, not '{value}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Settings {
        Settings {
            format: StdoutFormat::Table,
            result_mode: ResultMode::Changelog,
            expanded: false,
            timing: false,
            batch_size: 8192,
            state_ttl: None,
        }
    }

    #[test]
    fn settings_change_show_and_reset() {
        let mut settings = defaults();
        settings.set("format", "JSON").unwrap();
        settings
            .set("sql_client_execution_result_mode", "table")
            .unwrap();
        settings.set("batch_size", "7").unwrap();
        assert_eq!(settings.show("format").unwrap(), "json");
        assert_eq!(settings.result_mode, ResultMode::Table);
        assert_eq!(settings.batch_size, 7);
        settings.reset("batch_size", &defaults()).unwrap();
        assert_eq!(settings.batch_size, 8192);
        assert!(settings.show_all().contains("result_mode  table"));
    }

    #[test]
    fn wrong_names_and_values_say_what_is_taken() {
        let mut settings = defaults();
        let error = settings.set("colour", "red").unwrap_err();
        assert!(error.contains("no setting 'colour'"), "{error}");
        settings.set("table_exec_state_ttl", "7 days").unwrap();
        assert_eq!(settings.show("state_ttl").unwrap(), "7 days");
        assert!(settings.set("state_ttl", "soon").is_err());
        settings.set("state_ttl", "off").unwrap();
        assert_eq!(settings.state_ttl, None);
        let error = settings.set("batch_size", "0").unwrap_err();
        assert_eq!(error, "batch_size takes rows per source batch, not '0'");
        assert!(settings.set("expanded", "maybe").is_err());
    }
}
