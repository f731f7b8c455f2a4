//! Reading the command line. A subcommand's help lists its own options only (the ~45 global ones, which every
//! command accepts, are in `ferry --help`), and a usage error is one line that keeps clap's detail: what is
//! missing or wrong, and its suggestion.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};

use super::Cli;

const GLOBAL_OPTIONS: &str =
    "Global options (database, data directory, limits, logging…) are listed by `ferry --help`.";

pub enum Parsed {
    Run(Box<Cli>),
    /// `--help` or `--version`: print it and exit 0.
    Info(clap::Error),
    /// A usage error, as one line.
    Usage(String),
}

pub fn parse(args: Vec<OsString>) -> Parsed {
    let mut command = Cli::command().mut_subcommands(pointing_to_global_options);
    if asks_subcommand_help(&args) {
        command = command.mut_args(|arg| {
            let global = arg.is_global_set();
            arg.hide(global)
        });
    }
    let parsed = command
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    match parsed {
        Ok(cli) => Parsed::Run(Box::new(cli)),
        Err(e) if !e.use_stderr() => Parsed::Info(e),
        Err(e) => Parsed::Usage(one_line(&e.to_string())),
    }
}

/// Every subcommand's help ends with where the global options are.
fn pointing_to_global_options(command: clap::Command) -> clap::Command {
    command
        .after_help(GLOBAL_OPTIONS)
        .mut_subcommands(pointing_to_global_options)
}

/// `ferry <command> … --help`, `-h`, or `ferry help <command>`.
fn asks_subcommand_help(args: &[OsString]) -> bool {
    let words: Vec<&str> = args.iter().skip(1).filter_map(|a| a.to_str()).collect();
    let first_command = words.iter().position(|w| !w.starts_with('-'));
    let help_flag = words.iter().position(|w| *w == "--help" || *w == "-h");
    match (first_command, help_flag) {
        (Some(c), Some(h)) => c < h,
        (Some(c), None) => words[c] == "help" && words.len() > c + 1,
        _ => false,
    }
}

/// clap's message up to its usage block, joined on one line: "error: the following required arguments were
/// not provided: --to <TO> (see --help)".
fn one_line(rendered: &str) -> String {
    let detail: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let text = detail.join(" ");
    let text = text.trim_start_matches("error: ");
    let text = if text.is_empty() {
        "invalid arguments"
    } else {
        text
    };
    format!("error: {} (see --help)", text.replace(" tip: ", "; tip: "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn a_missing_argument_is_named_on_one_line() {
        let Parsed::Usage(line) = parse(args("ferry migrate inbox --account 1 --from 2")) else {
            panic!("expected a usage error");
        };
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("--to"), "{line}");
    }

    #[test]
    fn a_misspelt_flag_gets_clap_suggestion() {
        let Parsed::Usage(line) = parse(args("ferry migrations list --jsn")) else {
            panic!("expected a usage error");
        };
        assert!(line.contains("--jsn") && line.contains("--json"), "{line}");
    }

    #[test]
    fn subcommand_help_leaves_out_global_options() {
        let Parsed::Info(help) = parse(args("ferry migrations list --help")) else {
            panic!("expected help");
        };
        let text = help.to_string();
        assert!(!text.contains("--database-url"), "{text}");
        assert!(text.contains("ferry --help"), "{text}");
        let Parsed::Info(top) = parse(args("ferry --help")) else {
            panic!("expected help");
        };
        assert!(top.to_string().contains("--database-url"));
    }

    #[test]
    fn every_option_is_described() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_positional() && arg.get_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {}", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "ferry", &mut missing);
        assert!(
            missing.is_empty(),
            "options without a description: {missing:#?}"
        );
    }
}
