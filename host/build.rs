//! Builds the standard policy to a component so the router can embed it, and
//! records the git commit the binary is built from (`exum-router --version`).

fn main() -> anyhow::Result<()> {
    git_commit();
    exum_guest_build::build(&[exum_guest_build::Guest { package: "exum-policy-standard", constant: "STANDARD" }])
}

/// `EXUM_GIT_COMMIT`: the short commit of the checkout; `unknown` outside a
/// git checkout (a source package).
fn git_commit() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) if !c.is_empty() => c,
        _ => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=EXUM_GIT_COMMIT={commit}");
    // A new commit moves HEAD or the branch it names.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = std::path::PathBuf::from(dir);
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        // The branch's ref file, or packed-refs when it is packed (a path
        // that does not exist would rerun this script at every build).
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            for file in [dir.join(head), dir.join("packed-refs")] {
                if file.exists() {
                    println!("cargo:rerun-if-changed={}", file.display());
                }
            }
        }
    }
}
