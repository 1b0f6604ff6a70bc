//! `make gen`: regenerates every generated file from `proto/`.
//!
//! Usage: `codegen [--check] [--root DIR]`. With `--check`, nothing is
//! written: it exits 1 and names the files that differ from what would be
//! generated (CI's drift check).
//!
//! `codegen breaking [--against REF] [--root DIR]` compares the protos of the
//! working tree with those of a git ref (default: the merge base with
//! `main`) and exits 1 on a wire or JSON breaking change.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn breaking(mut args: impl Iterator<Item = String>) -> ExitCode {
    let mut root = PathBuf::from(".");
    let mut against: Option<String> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--against" => against = args.next(),
            "--root" => root = args.next().map(PathBuf::from).unwrap_or(root),
            other => {
                eprintln!(
                    "codegen breaking: unknown argument `{other}`\nusage: codegen breaking [--against REF] [--root DIR]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let against = against.unwrap_or_else(|| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["merge-base", "HEAD", "main"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "main".to_owned())
    });
    let result = pingora_config_codegen::breaking::pool_at_ref(&root, &against).and_then(|old| {
        let new = pingora_config_codegen::breaking::pool_at(&root)?;
        Ok(pingora_config_codegen::breaking::compare(&old, &new))
    });
    match result {
        Ok(changes) if changes.is_empty() => {
            eprintln!("codegen breaking: no breaking change against {against}");
            ExitCode::SUCCESS
        }
        Ok(changes) => {
            eprintln!("codegen breaking: {} breaking change(s) against {against}:", changes.len());
            for c in changes {
                eprintln!("  {c}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("codegen breaking: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let mut check = false;
    let mut root = PathBuf::from(".");
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "breaking") {
        args.next();
        return breaking(args);
    }
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
