//! `make gen`: regenerates every generated file from `proto/`.
//!
//! Usage: `codegen [--check] [--root DIR]`. With `--check`, nothing is
//! written: it exits 1 and names the files that differ from what would be
//! generated (CI's drift check).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let mut check = false;
    let mut root = PathBuf::from(".");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--check" => check = true,
            "--root" => root = args.next().map(PathBuf::from).unwrap_or(root),
            other => {
                eprintln!("codegen: unknown argument `{other}`\nusage: codegen [--check] [--root DIR]");
                return ExitCode::from(2);
            }
        }
    }
    let started = Instant::now();
    let outputs = match pingora_config_codegen::generate(&root) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("codegen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if check {
        pingora_config_codegen::check(&root, &outputs)
    } else {
        pingora_config_codegen::write(&root, &outputs)
    };
    match result {
        Ok(changed) if check && !changed.is_empty() => {
            eprintln!("codegen: generated files are out of date; run `make gen` and commit the result:");
            for f in changed {
                eprintln!("  {}", f.display());
            }
            ExitCode::FAILURE
        }
        Ok(changed) => {
            let verb = if check { "up to date" } else { "written" };
            eprintln!(
                "codegen: {} files {verb} ({} changed) in {} ms",
                outputs.len(),
                changed.len(),
                started.elapsed().as_millis()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("codegen: {e}");
            ExitCode::FAILURE
        }
    }
}
