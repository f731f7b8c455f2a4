use clap::Parser;
use ferry::cli::Command;

#[tokio::main]
async fn main() {
    let cli = match ferry::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // clap's usage errors span several lines; scripts get one.
            let rendered = e.to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("error: {first} (see --help)");
            std::process::exit(2);
        }
    };
    ferry::private_files();
    if !matches!(
        cli.command,
        Command::Serve { .. } | Command::Worker | Command::Bench { .. }
    ) {
        // Rust ignores SIGPIPE, so printing to a reader that hung up (`| head`) would panic. One-shot commands
        // end quietly instead, like other Unix tools; servers keep ignoring it (their sockets report EPIPE).
        // SAFETY: at startup, before the command runs; nothing else in the process changes this disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let Err(e) = ferry::cli::run(cli).await {
        // One line, the whole cause chain, non-zero exit.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
