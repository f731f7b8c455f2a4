use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = ferry::cli::Cli::parse();
    if let Err(e) = ferry::cli::run(cli).await {
        // One line, the whole cause chain, non-zero exit.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
