//! `dmaslab`: report, cost, demo, run and trace.
//!
//! Each subcommand lives in its own module with an `Args` (clap) and a `run` function.
//! Errors print one line on stderr and exit non-zero.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cost;
mod demo;
mod report;
mod run;
mod trace;

#[derive(Parser)]
#[command(
    name = "dmaslab",
    version,
    about = "kmalloc-style slab allocator: DMA alignment policies measured"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the built-in seed workload under each policy and print what each costs.
    Report(report::Args),
    /// What policy A (every kmalloc buffer DMA-safe) would cost, from a /proc/slabinfo.
    Cost(cost::Args),
    /// The seed's kmalloc(4) DMA example on the cache model: policy B (direct kmalloc mapping
    /// and DMA interface), A, C and a coherent device, in both corruption directions.
    Demo(demo::Args),
    /// Run a command with libdmaslab.so preloaded: exit status, wall time, peak RSS and its
    /// slabinfo table; `--compare` runs it under each policy side by side.
    Run(run::Args),
    /// Record a live kernel's kmalloc/kmem_cache/DMA events (`record`, root), or replay a
    /// recorded trace under A at each DMA line, B and C (`replay`).
    Trace(trace::Args),
}

/// A failed command: one line for stderr and the exit status.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    /// Bad input (malformed file, bad value): exit status 2.
    pub fn input(message: impl Into<String>) -> Self {
        CliError {
            code: 2,
            message: message.into(),
        }
    }
    /// Anything else that went wrong: exit status 1.
    pub fn failure(message: impl Into<String>) -> Self {
        CliError {
            code: 1,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report(args) => report::run(args),
        Command::Cost(args) => cost::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Run(args) => run::run(args),
        Command::Trace(args) => trace::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmaslab: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
