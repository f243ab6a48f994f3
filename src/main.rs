//! The `sightline` command: serve (default), migrate, create-user, export-schema.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sightline::auth::Role;
use sightline::{Application, Config};

/// mimalloc: request handling allocates many small, short-lived values
/// (GraphQL inputs, JSON), where it is markedly faster than the system
/// allocator under concurrency (measured by the ingest benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sightline: a self-hosted monitoring and incident server with a GraphQL API.
#[derive(Parser)]
#[command(name = "sightline", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate the database and serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create a user.
    CreateUser {
        /// Login name.
        #[arg(long)]
        username: String,
        /// Email address (default: `<username>@localhost.localdomain`).
        #[arg(long)]
        email: Option<String>,
        /// Role: admin, moderator or user.
        #[arg(long, default_value = "user")]
        role: String,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Write the GraphQL schema (SDL) to a file.
    ExportSchema {
        /// Where to write it.
        #[arg(long, short, default_value = "schema.graphql")]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    if let Some(Command::ExportSchema { output }) = &cli.command {
        return match std::fs::write(output, sightline::graphql::export_sdl()) {
            Ok(()) => {
                eprintln!("wrote {}", output.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", output.display());
                ExitCode::FAILURE
            }
        };
    }
    sightline::init_tracing(&cli.config.log_filter, cli.config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(cli.config)
                .await
                .map_err(|e| e.to_string())?;
            app.run_until_stopped(sightline::shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
        Command::Migrate => {
            let db = sightline::db::connect(&cli.config)
                .await
                .map_err(|e| e.to_string())?;
            sightline::db::migrate(&db)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::CreateUser {
            username,
            email,
            role,
            password_stdin,
        } => {
            let role: Role = role.parse().map_err(|e: sightline::AppError| e.message)?;
            let password = read_password(password_stdin)?;
            let db = sightline::db::connect(&cli.config)
                .await
                .map_err(|e| e.to_string())?;
            sightline::db::migrate(&db)
                .await
                .map_err(|e| e.to_string())?;
            let email = email.unwrap_or_else(|| format!("{username}@localhost.localdomain"));
            let user = sightline::auth::service::create_user(
                &db,
                sightline::auth::service::NewUser {
                    username,
                    email,
                    password,
                    role,
                },
            )
            .await
            .map_err(|e| e.describe())?;
            eprintln!("created {} `{}` ({})", user.role, user.username, user.id);
            Ok(())
        }
        Command::ExportSchema { .. } => Ok(()),
    }
}

fn read_password(from_stdin: bool) -> Result<String, String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("password: ").map_err(|e| e.to_string())?;
    let second = rpassword::prompt_password("again: ").map_err(|e| e.to_string())?;
    if first != second {
        return Err("the passwords do not match".to_owned());
    }
    Ok(first)
}
