//! What the largest components the load-time checks let through cost to
//! compile: wall time and peak memory of one compile with the router's engine,
//! for shapes at the limits of `engine::precheck` (many small functions, one
//! function as large as WebAssembly allows, many locals). Each shape runs in a
//! process of its own so its peak memory is its own. Prints a Markdown table.
//!
//! `cargo run --release -p exum-bench --bin compile-cost`

use std::time::Instant;

use exum_router::policy::engine::{MAX_FUNCTIONS, PolicyEngine, component_with_functions};

fn leb(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if n == 0 { byte } else { byte | 0x80 });
        if n == 0 {
            break;
        }
    }
}

fn section(id: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(content.len() as u64, out);
    out.extend_from_slice(content);
}

/// A component of one core module whose functions (type `[] -> []`) have the
/// given bodies (locals declaration included, without the size prefix).
fn component_of(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module);
    let mut funcs = Vec::new();
    leb(bodies.len() as u64, &mut funcs);
    funcs.extend(std::iter::repeat_n(0u8, bodies.len()));
    section(3, &funcs, &mut module);
    let mut code = Vec::new();
    leb(bodies.len() as u64, &mut code);
    for b in bodies {
        leb(b.len() as u64, &mut code);
        code.extend_from_slice(b);
    }
    section(10, &code, &mut module);
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(1, &module, &mut component);
    component
}

/// A body of `len` bytes or a little less: `locals` i64 locals, then the
/// repeated `pattern`, then `end`.
fn body(locals: u32, pattern: &[u8], len: usize) -> Vec<u8> {
    let mut b = Vec::new();
    if locals == 0 {
        b.push(0);
    } else {
        b.push(1);
        leb(u64::from(locals), &mut b);
        b.push(0x7e);
    }
    while b.len() + pattern.len() < len {
        b.extend_from_slice(pattern);
    }
    b.push(0x0b);
    b
}

const FUNCTION_MAX: usize = 7_654_321;

fn shape(name: &str) -> Vec<u8> {
    match name {
        "functions" => component_with_functions(MAX_FUNCTIONS as u32),
        // i32.const 1; drop
        "one-giant-function" => component_of(&[body(0, &[0x41, 1, 0x1a], FUNCTION_MAX)]),
        // local.get a; local.get b; i64.add; local.set c over 50,000 locals
        "many-locals" => {
            let mut pattern = Vec::new();
            for i in 0..2_000u64 {
                for op in [(0x20, i * 7 % 50_000), (0x20, i * 13 % 50_000)] {
                    pattern.push(op.0);
                    leb(op.1, &mut pattern);
                }
                pattern.push(0x7c);
                pattern.push(0x21);
                leb(i * 17 % 50_000, &mut pattern);
            }
            component_of(&[body(50_000, &pattern, FUNCTION_MAX)])
        }
        // nested blocks: block ... br_if 0 ... end, 1,000 deep, repeated
        "branches" => {
            let mut pattern = Vec::new();
            for _ in 0..1_000 {
                pattern.extend_from_slice(&[0x02, 0x40]);
            }
            for _ in 0..1_000 {
                pattern.extend_from_slice(&[0x41, 0, 0x0d, 0, 0x0b]);
            }
            component_of(&[body(0, &pattern, FUNCTION_MAX)])
        }
        "code-budget" => {
            let bodies: Vec<Vec<u8>> = (0..12).map(|_| body(0, &[0x41, 1, 0x1a], 1 << 20)).collect();
            component_of(&bodies)
        }
        other => panic!("unknown shape {other}"),
    }
}

fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(name) = args.get(2).filter(|_| args[1] == "--shape") {
        let bytes = shape(name);
        let engine = PolicyEngine::new().expect("engine");
        let before = peak_kib();
        let start = Instant::now();
        let outcome = match engine.compile(&bytes) {
            Ok(_) => "compiled".to_owned(),
            Err(e) => e.to_string().chars().take(80).collect(),
        };
        let elapsed = start.elapsed();
        println!(
            "| {name} | {:.1} | {:.2} | {} | {} | {} |",
            bytes.len() as f64 / 1048576.0,
            elapsed.as_secs_f64(),
            before / 1024,
            peak_kib() / 1024,
            outcome
        );
        return;
    }
    println!("| shape | MiB | compile s | RSS before MiB | peak RSS MiB | outcome |");
    println!("|---|---:|---:|---:|---:|---|");
    let shapes = ["functions", "code-budget", "one-giant-function", "many-locals", "branches"];
    for name in args.get(1).map_or(shapes.to_vec(), |s| s.split(',').collect()) {
        let out = std::process::Command::new(&args[0]).args(["--shape", name]).output().expect("run");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            println!(
                "| {name} | | | | | failed: {} |",
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            );
        }
    }
}
