//! The `otp-server` binary: parses the command line and hands over to the library.
//!
//! `otp-server [serve] [--config FILE]` runs the server; `otp-server plugins check
//! FILE.wasm` tells a plugin author whether the server would accept a component;
//! `otp-server keys rotate [--revoke-current]` and `otp-server keys rewrap
//! --new-master-key-file F` act on the key-encryption keys shared through Redis.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "otp-server",
    version,
    about = "One-time passwords with WebAssembly hooks"
)]
struct Cli {
    /// A TOML configuration file (default: $OTP_CONFIG, else built-in defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Work with plugin files.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Act on the key-encryption keys every instance shares through Redis (uses the
    /// same configuration as the server: OTP_STORE, OTP_MASTER_KEY, …).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a fresh key current; every instance adopts it within a second.
    Rotate {
        /// Also revoke the key that was current: cookies sealed with it stop opening
        /// on every instance (for a key that may have leaked).
        #[arg(long)]
        revoke_current: bool,
    },
    /// Re-seal every stored key under a new master key.
    Rewrap {
        /// A file holding the new master key (base64 of 32 bytes).
        #[arg(long)]
        new_master_key_file: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Report the hooks a component provides, what it imports, and whether the
    /// server would accept it. Exits 1 when it would be rejected.
    Check { file: PathBuf },
}

// mimalloc instead of the system allocator: a request allocates and frees many small
// objects on two or more threads, where glibc malloc spent ~6 % of a create's CPU time.
// Built without transparent huge pages (`no_thp`): mimalloc asks for them on its arenas,
// and each touched 2 MiB page then counts whole — 70 MB resident at idle instead of 21.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config),
        Command::Plugins {
            command: PluginsCommand::Check { file },
        } => check(&file, cli.config),
        Command::Keys { command } => keys(cli.config, command),
    }
}

/// The configuration from `--config` / `OTP_CONFIG` and the environment; an error is
/// printed and becomes exit code 2.
fn load_config(config_file: Option<PathBuf>) -> Result<otp_server::config::Config, ExitCode> {
    otp_server::config::Config::load(config_file.as_deref(), &|name| std::env::var(name).ok())
        .map_err(|error| {
            eprintln!("otp-server: configuration error: {error}");
            ExitCode::from(2)
        })
}

/// `plugins check`, with the server's configuration: a file is judged by the same rules
/// (`plugin_env`, the per-hook limits) as in the server.
fn check(file: &std::path::Path, config_file: Option<PathBuf>) -> ExitCode {
    let config = match load_config(config_file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match otp_server::plugins::check::check_file(file, &config.runtime, &config.plugin_env) {
        Ok(report) => {
            print!("{}", report.text);
            if report.accepted {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn keys(config_file: Option<PathBuf>, command: KeysCommand) -> ExitCode {
    let config = match load_config(config_file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let command = match &command {
        KeysCommand::Rotate { revoke_current } => otp_server::key_commands::KeyCommand::Rotate {
            revoke_current: *revoke_current,
        },
        KeysCommand::Rewrap {
            new_master_key_file,
        } => otp_server::key_commands::KeyCommand::Rewrap {
            new_master_key_file,
        },
    };
    let outcome = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(otp_server::key_commands::run(&config, command)));
    match outcome {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("otp-server keys: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config_file: Option<PathBuf>) -> ExitCode {
    let config = match load_config(config_file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    otp_server::logging::init(&config.log, config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("otp-server: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(otp_server::server::run(config));
    if let Err(error) = &result {
        tracing::error!("{error:#}");
    }
    // Background tasks stop with the runtime; then the log's last lines go out, before
    // anything else reaches stderr.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    otp_server::logging::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("otp-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}
