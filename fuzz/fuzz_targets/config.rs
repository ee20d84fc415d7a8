//! Configuration and directory parsing and validation: the input is a router
//! configuration, a NUL byte, then a directory (TOML, or JSON when the first
//! byte is odd). Anything must be accepted or refused with an error, never crash.
#![no_main]

use std::path::Path;

use exum_router::control::config::RouterConfig;
use exum_router::control::directory::Directory;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (config, directory) = text.split_once('\0').unwrap_or((text, ""));
    let json = data.first().is_some_and(|b| b & 1 == 1);
    let path = Path::new("/nonexistent/router.toml");
    let Ok(mut config) = RouterConfig::from_text(path, config) else { return };
    if json {
        config.directory.set_extension("json");
    }
    let _ = Directory::from_text(&config, directory);
});
