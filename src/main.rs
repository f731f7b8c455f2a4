use clap::Parser;

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
    if let Err(e) = ferry::cli::run(cli).await {
        // One line, the whole cause chain, non-zero exit.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
