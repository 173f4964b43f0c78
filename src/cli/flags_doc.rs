//! `docs/flags.md` is generated from the clap definitions, so the reference and the binary cannot disagree. The test
//! fails when the file differs from what the definitions say; `CFI_UPDATE_DOCS=1 cargo test --bin cf-invalidator
//! flags` rewrites it.

use clap::{Arg, Command, CommandFactory};

use super::Cli;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/flags.md");

/// The whole reference, in Markdown.
fn reference() -> String {
    let cli = Cli::command();
    let mut out = String::from(
        "# Flags\n\n<!-- Generated from src/cli.rs by `CFI_UPDATE_DOCS=1 cargo test --bin cf-invalidator flags`: \
         edit the definitions, not this file. -->\n\nEvery flag can also be set with the environment variable \
         beside it. AWS region, credentials and endpoints come from the standard AWS chain (`AWS_REGION`, \
         `AWS_PROFILE`, `AWS_ENDPOINT_URL`, ...); `INVALIDATOR_LOG` takes a tracing filter (default `info`).\n\n",
    );
    out.push_str("## Every command\n\n");
    table(&mut out, cli.get_arguments());
    for command in cli.get_subcommands() {
        section(&mut out, command);
    }
    out.push_str("## Exit codes\n\n");
    out.push_str(&flat(&cli.get_after_help().map(ToString::to_string).unwrap_or_default()));
    out.push('\n');
    out
}

fn section(out: &mut String, command: &Command) {
    out.push_str(&format!("## `cf-invalidator {}`\n\n", command.get_name()));
    if let Some(about) = command.get_long_about().or(command.get_about()) {
        out.push_str(&format!("{}\n\n", flat(&about.to_string())));
    }
    table(out, command.get_arguments());
}

fn table<'a>(out: &mut String, arguments: impl Iterator<Item = &'a Arg>) {
    out.push_str("| flag | environment variable | default | meaning |\n|---|---|---|---|\n");
    for arg in arguments.filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version")) {
        out.push_str(&format!("| {} | {} | {} | {} |\n", flag(arg), variable(arg), default(arg), meaning(arg)));
    }
    out.push('\n');
}

fn flag(arg: &Arg) -> String {
    let value = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map_or_else(|| arg.get_id().as_str().to_ascii_uppercase().replace('_', "-"), ToString::to_string);
    match arg.get_long() {
        Some(long) if arg.get_action().takes_values() => format!("`--{long} {value}`"),
        Some(long) => format!("`--{long}`"),
        None => format!("`{value}...`"),
    }
}

fn variable(arg: &Arg) -> String {
    match arg.get_env() {
        Some(name) if arg.get_value_delimiter() == Some(',') => {
            format!("`{}` (comma-separated)", name.to_string_lossy())
        }
        Some(name) if arg.get_value_delimiter() == Some(';') => {
            format!("`{}` (semicolon-separated)", name.to_string_lossy())
        }
        Some(name) => format!("`{}`", name.to_string_lossy()),
        None => "—".into(),
    }
}

fn default(arg: &Arg) -> String {
    let defaults: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    if !arg.get_action().takes_values() {
        "off".into()
    } else if arg.is_required_set() {
        "required".into()
    } else if defaults.is_empty() {
        "—".into()
    } else {
        format!("`{}`", defaults.join(","))
    }
}

fn meaning(arg: &Arg) -> String {
    let help = arg.get_long_help().or(arg.get_help()).map(ToString::to_string).unwrap_or_default();
    let choices: Vec<String> = arg.get_possible_values().iter().map(|v| format!("`{}`", v.get_name())).collect();
    let mut text = flat(&help);
    if arg.get_action().takes_values() && !choices.is_empty() {
        let stop = if text.is_empty() || text.ends_with('.') { "" } else { "." };
        text.push_str(&format!("{stop} One of {}.", choices.join(", ")));
    }
    text.replace('|', "\\|")
}

/// Paragraphs of help as one line.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn docs_flags_md_says_what_the_definitions_say() {
    let generated = reference();
    if std::env::var_os("CFI_UPDATE_DOCS").is_some() {
        std::fs::write(PATH, &generated).unwrap();
        return;
    }
    let written = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        written == generated,
        "docs/flags.md is out of date: run CFI_UPDATE_DOCS=1 cargo test --bin cf-invalidator flags"
    );
}

#[test]
fn every_flag_has_an_environment_variable() {
    let cli = Cli::command();
    let commands = std::iter::once(&cli).chain(cli.get_subcommands());
    for command in commands {
        for arg in command.get_arguments().filter(|arg| arg.get_long().is_some_and(|l| l != "help" && l != "version")) {
            assert!(arg.get_env().is_some(), "{} --{} has no environment variable", command.get_name(), arg.get_id());
        }
    }
}

#[test]
fn every_flag_the_user_docs_name_exists() {
    // Other tools' flags the pages quote: the AWS CLI's and `scripts/demo --status`.
    const OTHERS: [&str; 2] = ["message-body", "status"];
    let cli = Cli::command();
    let longs: Vec<&str> = std::iter::once(&cli)
        .chain(cli.get_subcommands())
        .flat_map(Command::get_arguments)
        .filter_map(Arg::get_long)
        .collect();
    for page in ["README.md", "docs/producers.md", "docs/operations.md"] {
        let text = std::fs::read_to_string(format!("{}/{page}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        for (at, _) in text.match_indices("--") {
            let name: String = text[at + 2..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                .collect();
            let is_flag = name.starts_with(|c: char| c.is_ascii_lowercase());
            assert!(
                !is_flag || longs.contains(&name.as_str()) || OTHERS.contains(&name.as_str()),
                "{page} names --{name}"
            );
        }
    }
}
