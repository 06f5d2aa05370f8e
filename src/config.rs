//! The config file: every flag of the daemon commands (`serve`, `mount`) can also be a key of a
//! TOML file, named as the flag without its dashes (`--read-timeout 30` is
//! `read_timeout = 30`). Command-line flags win over `TORRENTDRIVE_*` environment variables,
//! which win over the file.
//!
//! The file's keys become command-line arguments that clap parses with everything else, so a
//! value is checked exactly as the flag's is, and a bad one is an error naming the key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, Parser};

use crate::cli::Cli;

/// The file read when neither `--config` nor `TORRENTDRIVE_CONFIG` names one.
pub const DEFAULT_NAME: &str = "config.toml";
/// Commands whose flags the file sets.
const DAEMON_COMMANDS: [&str; 2] = ["serve", "mount"];

/// Parses the command line, with the config file's settings where flags and environment
/// variables leave them unset. Exits as clap does for `--help` and plain usage errors.
pub fn parse() -> anyhow::Result<Cli> {
    parse_from(std::env::args_os().collect())
}

pub fn parse_from(argv: Vec<OsString>) -> anyhow::Result<Cli> {
    let matches = match Cli::command().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    let Some((file, settings)) = settings(&matches)? else {
        return Cli::try_parse_from(argv).map_err(|e| -> anyhow::Error { e.exit() });
    };
    let mut full = argv;
    let mut origin = Vec::new();
    for setting in settings {
        origin.push((setting.flag.clone(), setting.key.clone()));
        full.extend(setting.args);
    }
    Cli::try_parse_from(&full).map_err(|e| {
        let message = e.to_string();
        match origin
            .iter()
            .find(|(flag, _)| message.contains(flag.as_str()))
        {
            Some((_, key)) => anyhow!(
                "config {}: key `{key}`: {}",
                file.display(),
                message
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
            ),
            None => e.exit(),
        }
    })
}

/// A key of the file, as the arguments it stands for.
struct Setting {
    key: String,
    flag: String,
    args: Vec<OsString>,
}

/// The config file in effect and the arguments it adds, if a daemon command runs and a
/// file is found.
fn settings(matches: &ArgMatches) -> anyhow::Result<Option<(PathBuf, Vec<Setting>)>> {
    let Some((command, sub)) = matches.subcommand() else {
        return Ok(None);
    };
    if !DAEMON_COMMANDS.contains(&command) {
        return Ok(None);
    }
    let explicit = matches.get_one::<PathBuf>("config").cloned();
    let file = match &explicit {
        Some(path) => path.clone(),
        None => {
            let data = matches
                .get_one::<PathBuf>("data")
                .cloned()
                .unwrap_or_else(|| PathBuf::from("./data"));
            let path = data.join(DEFAULT_NAME);
            if !path.exists() {
                return Ok(None);
            }
            path
        }
    };
    let table = read(&file)?;
    let root = Cli::command();
    let mut out = Vec::new();
    for (key, value) in &table {
        if key == "data" {
            // The default file is found through the data dir: it can't move it.
            if explicit.is_none() {
                bail!(
                    "config {}: `data` can only be set in a file given with --config",
                    file.display()
                );
            }
            if !is_set(matches, "data") {
                out.push(setting(&file, key, "data", ArgAction::Set, value)?);
            }
            continue;
        }
        let long = key.replace('_', "-");
        let arg_of = |name: &str| {
            root.find_subcommand(name).and_then(|c| {
                c.get_arguments()
                    .find(|a| a.get_long() == Some(long.as_str()))
                    .cloned()
            })
        };
        match arg_of(command) {
            Some(arg) => {
                if !is_set(sub, arg.get_id().as_str()) {
                    out.push(setting(&file, key, &long, arg.get_action().clone(), value)?);
                }
            }
            // A key of the other daemon command (`listen` while mounting only).
            None if DAEMON_COMMANDS.iter().any(|c| arg_of(c).is_some()) => {}
            None => bail!(
                "config {}: unknown key `{key}` (see `torrentdrive config example`)",
                file.display()
            ),
        }
    }
    Ok(Some((file, out)))
}

fn read(file: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading config {}", file.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| anyhow!("config {}: {}", file.display(), e.to_string().trim()))
}

/// Whether the command line or the environment set argument `id`: those win over the file.
fn is_set(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

fn setting(
    file: &Path,
    key: &str,
    long: &str,
    action: ArgAction,
    value: &toml::Value,
) -> anyhow::Result<Setting> {
    let flag = format!("--{long}");
    let bad = |want: &str| {
        anyhow!(
            "config {}: key `{key}` must be {want}, not {value}",
            file.display()
        )
    };
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        _ => Err(bad("a string or a number")),
    };
    let mut args: Vec<OsString> = Vec::new();
    match action {
        ArgAction::SetTrue => match value {
            toml::Value::Boolean(true) => args.push(flag.clone().into()),
            toml::Value::Boolean(false) => {}
            _ => return Err(bad("true or false")),
        },
        ArgAction::Append => {
            let values = match value {
                toml::Value::Array(items) => items.iter().map(scalar).collect::<Result<_, _>>()?,
                other => vec![scalar(other)?],
            };
            for v in values {
                args.push(flag.clone().into());
                args.push(v.into());
            }
        }
        _ => {
            args.push(flag.clone().into());
            args.push(scalar(value)?.into());
        }
    }
    // `--flag=value` keeps values that start with a dash from looking like flags.
    let args = match args.as_slice() {
        [f, v] => vec![format!("{}={}", f.to_string_lossy(), v.to_string_lossy()).into()],
        _ => args,
    };
    Ok(Setting {
        key: key.to_owned(),
        flag,
        args,
    })
}

/// A commented config file with every key, its default and what it does.
pub fn example() -> String {
    let root = Cli::command();
    let mut out = String::from(
        "# torrentdrive configuration (TOML).\n\
         #\n\
         # Read by `torrentdrive serve` and `torrentdrive mount` from --config FILE, the\n\
         # TORRENTDRIVE_CONFIG environment variable, or else DATA/config.toml if it exists.\n\
         # Every key is a flag of those commands without its dashes: `read_timeout = 30` is\n\
         # `--read-timeout 30`. Command-line flags win over TORRENTDRIVE_* environment\n\
         # variables, which win over this file. An unknown key or a bad value stops the start\n\
         # with an error naming it. Uncomment a line to change it; shown are the defaults.\n",
    );
    out.push_str(
        "\n# Where everything is stored (only in a file given with --config or\n\
         # TORRENTDRIVE_CONFIG). Environment: TORRENTDRIVE_DATA.\n#data = \"./data\"\n",
    );
    let mut seen = Vec::new();
    for name in DAEMON_COMMANDS {
        let Some(command) = root.find_subcommand(name) else {
            continue;
        };
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version", "config", "data"].contains(&long) || seen.contains(&long) {
                continue;
            }
            seen.push(long);
            let key = long.replace('-', "_");
            out.push('\n');
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            for line in wrap(&help, 88) {
                out.push_str(&format!("# {line}\n"));
            }
            let mut notes = Vec::new();
            if name == "mount" {
                notes.push("`torrentdrive mount` only.".to_owned());
            }
            if let Some(env) = arg.get_env() {
                notes.push(format!("Environment: {}.", env.to_string_lossy()));
            }
            if !notes.is_empty() {
                out.push_str(&format!("# {}\n", notes.join(" ")));
            }
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let value = match arg.get_action() {
                ArgAction::SetTrue => "false".to_owned(),
                ArgAction::Append => format!(
                    "[{}]",
                    defaults
                        .iter()
                        .map(|d| toml_value(d))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => match defaults.first() {
                    Some(d) => toml_value(d),
                    None => {
                        let name = arg
                            .get_value_names()
                            .and_then(|n| n.first())
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "VALUE".into());
                        out.push_str("# (not set by default)\n");
                        format!("\"{name}\"")
                    }
                },
            };
            out.push_str(&format!("#{key} = {value}\n"));
        }
    }
    out
}

/// A default as TOML: numbers bare, anything else quoted.
fn toml_value(text: &str) -> String {
    if text.parse::<i64>().is_ok() || text.parse::<f64>().is_ok_and(|f| f.is_finite()) {
        text.to_owned()
    } else {
        toml::Value::String(text.to_owned()).to_string()
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_is_valid_toml_with_every_key_commented_out() {
        let text = example();
        assert!(text.parse::<toml::Table>().expect("parses").is_empty());
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.contains(" = ") && !l.starts_with(' '))
            .map(|l| format!("{l}\n"))
            .collect();
        let table: toml::Table = uncommented.parse().expect("uncommented example parses");
        for key in [
            "listen",
            "read_timeout",
            "mount",
            "allow_other",
            "tracker",
            "data",
        ] {
            assert!(table.contains_key(key), "{key} missing:\n{text}");
        }
    }
}
