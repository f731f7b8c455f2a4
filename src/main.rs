use ferry::cli::Parsed;

#[tokio::main]
async fn main() {
    let cli = match ferry::cli::parse(std::env::args_os().collect()) {
        Parsed::Run(cli) => *cli,
        Parsed::Info(help) => help.exit(), // --help, --version
        Parsed::Usage(line) => {
            // clap's usage errors span several lines; scripts get one, with the detail.
            eprintln!("{line}");
            std::process::exit(2);
        }
    };
    ferry::private_files();
    if !cli.command.is_long_running() {
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
