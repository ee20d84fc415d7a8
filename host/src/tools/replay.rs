//! `replay`: recorded policy calls run again, their imports answered from the record.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use crate::policy::PolicyEngine;

use super::ToolError;

/// Options of `replay`.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Replay on this component instead of the recorded one.
    pub policy: Option<std::path::PathBuf>,
    /// Give `init` this string instead of the recorded one.
    pub policy_config: Option<String>,
    /// Where recorded components are (default: the `policies` folder beside
    /// the record's tenant folder, as the recorder keeps them).
    pub components: Option<std::path::PathBuf>,
    /// Only the record on this line (from 1).
    pub line: Option<usize>,
}

/// What `replay` found: its report, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The report, one block per record.
    pub text: String,
    /// Records whose replayed output differs from the recorded one.
    pub differing: usize,
    /// Records that could not be replayed.
    pub failed: usize,
}

/// `exum-router replay <records> [--policy other.wasm]`: runs recorded policy
/// calls again with their imports answered from the record, and compares.
pub fn replay(path: &Path, options: &ReplayOptions) -> Result<ReplayReport, ToolError> {
    use crate::policy::record;
    use crate::policy::replay::replay as run;
    let records =
        record::read(path).map_err(|e| ToolError::Sip { path: path.display().to_string(), reason: e.to_string() })?;
    let engine = Arc::new(PolicyEngine::new().map_err(|e| ToolError::Engine(format!("{e:#}")))?);
    let other = match &options.policy {
        Some(p) => Some((
            p.display().to_string(),
            std::fs::read(p).map_err(|source| ToolError::Read { path: p.display().to_string(), source })?,
        )),
        None => None,
    };
    let components = options.components.clone().unwrap_or_else(|| {
        let parent = path.parent().unwrap_or(Path::new("."));
        let beside = parent.join("policies");
        if beside.is_dir() { beside } else { parent.parent().unwrap_or(Path::new(".")).join("policies") }
    });
    let standard_hash = crate::policy::hex_sha256(crate::policy::STANDARD_COMPONENT);
    let mut report = ReplayReport { text: String::new(), differing: 0, failed: 0 };
    for (i, r) in records.iter().enumerate() {
        let n = i + 1;
        if options.line.is_some_and(|l| l != n) {
            continue;
        }
        let out = &mut report.text;
        let short = r.policy.hash.get(..12).unwrap_or(&r.policy.hash);
        let export = match r.export {
            record::Export::Route => "route",
            record::Export::OnFailure => "on-failure",
        };
        let _ = writeln!(
            out,
            "record {n}: tenant {}, call-id {}, {export}, recorded with {} v{} (sha256 {short}…)",
            r.tenant, r.call_id, r.policy.name, r.policy.version
        );
        let bytes = match &other {
            Some((name, bytes)) => {
                let _ = writeln!(out, "replayed on {name}");
                bytes.clone()
            }
            None if r.policy.hash == standard_hash => crate::policy::STANDARD_COMPONENT.to_vec(),
            None => {
                let file = components.join(format!("{}.wasm", r.policy.hash));
                match std::fs::read(&file) {
                    Ok(b) if crate::policy::hex_sha256(&b) != r.policy.hash => {
                        report.failed += 1;
                        let _ = writeln!(
                            out,
                            "error: {} is not the recorded component (another SHA-256)\n",
                            file.display()
                        );
                        continue;
                    }
                    Ok(b) => b,
                    Err(e) => {
                        report.failed += 1;
                        let _ = writeln!(
                            out,
                            "error: the recorded component {}: {e} (give it with --policy)\n",
                            file.display()
                        );
                        continue;
                    }
                }
            }
        };
        let config = options.policy_config.as_deref().unwrap_or(&r.policy.init_config);
        match run(&engine, r, &bytes, config) {
            Ok(replayed) => {
                let _ = writeln!(out, "output {}", serde_json::to_string(&replayed.output).unwrap_or_default());
                if replayed.same {
                    let _ = writeln!(out, "same as recorded\n");
                } else {
                    report.differing += 1;
                    let _ = writeln!(out, "differs from the recorded output:");
                    for d in &replayed.differences {
                        let _ = writeln!(out, "  {d}");
                    }
                    out.push('\n');
                }
            }
            Err(e) => {
                report.failed += 1;
                let _ = writeln!(out, "error: {e}\n");
            }
        }
    }
    if options.line.is_some_and(|l| l == 0 || l > records.len()) {
        return Err(ToolError::Sip {
            path: path.display().to_string(),
            reason: format!("no record on line {} (it holds {})", options.line.unwrap_or(0), records.len()),
        });
    }
    let total = options.line.map_or(records.len(), |_| 1);
    let _ = writeln!(
        report.text,
        "{total} replayed: {} same, {} different, {} not replayed",
        total - report.differing - report.failed,
        report.differing,
        report.failed
    );
    Ok(report)
}
