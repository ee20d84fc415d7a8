//! Golden files of the configuration's errors: each `config-errors/NAME.toml`
//! is refused with exactly the message in `NAME.err` (the file named by its
//! name alone). A change of wording shows in review as a change of these files;
//! `EXUM_BLESS=1 cargo test -p exum-router --test config_errors` writes them
//! again from what the router says.

use std::path::Path;

use exum_router::control::config::RouterConfig;

#[test]
fn every_bad_configuration_gets_its_exact_message() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config-errors");
    let bless = std::env::var_os("EXUM_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&folder)
        .expect("tests/config-errors")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        let name = case.file_name().expect("a name").to_string_lossy().into_owned();
        // In a folder of its own, so the paths it names are the same everywhere.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(&name);
        std::fs::copy(case, &path).expect("copy");
        let message = match RouterConfig::load(&path) {
            Ok(_) => format!("accepted: {name} must be refused"),
            Err(e) => e.to_string().replace(&format!("{}/", dir.path().display()), ""),
        };
        let golden = case.with_extension("err");
        if bless {
            std::fs::write(&golden, format!("{message}\n")).expect("write");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected.trim_end() != message {
            wrong.push(format!("{name}:\n  expected {}\n  got      {message}", expected.trim_end()));
        }
    }
    assert!(wrong.is_empty(), "messages differ from the golden files:\n{}", wrong.join("\n"));
}
