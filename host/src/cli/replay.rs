//! `exum-router replay`: recorded policy calls run again.

use std::path::PathBuf;
use std::process::ExitCode;

/// The records and what to replay them on.
#[derive(clap::Args)]
pub struct Args {
    /// A file of decision records (JSON lines), one record, or a shadow sample.
    records: PathBuf,
    /// Replay on this component instead of the recorded one.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Give `init` this string instead of the recorded one.
    #[arg(long)]
    policy_config: Option<String>,
    /// Where the recorded components are (default: `policies/` beside the
    /// tenant's folder of records).
    #[arg(long)]
    components: Option<PathBuf>,
    /// Only the record on this line (from 1).
    #[arg(long)]
    line: Option<usize>,
}

/// Prints each output; exit status 0 all the same, 2 some differ, 1 some failed.
pub fn run(args: Args) -> ExitCode {
    let options = crate::tools::ReplayOptions {
        policy: args.policy,
        policy_config: args.policy_config,
        components: args.components,
        line: args.line,
    };
    match crate::tools::replay(&args.records, &options) {
        Ok(report) => {
            print!("{}", report.text);
            if report.failed > 0 {
                ExitCode::FAILURE
            } else if report.differing > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => super::fail(e),
    }
}
