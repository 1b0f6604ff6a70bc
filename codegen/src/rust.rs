//! Rust output: prost messages, tonic client/server stubs and pbjson
//! proto-JSON serde impls, formatted with rustfmt.
//!
//! prost-build and pbjson-build write into a scratch directory; the files are
//! then given the generated-code header and formatted, so that the output
//! depends only on the protos and the pinned toolchain.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, Outputs, header, io};

pub fn generate(fds: prost_types::FileDescriptorSet, encoded: &[u8], out: &mut Outputs) -> Result<(), Error> {
    let scratch = tempfile::tempdir().map_err(io("creating the scratch directory"))?;
    generate_into(scratch.path(), fds, encoded, out)
}

fn generate_into(
    scratch: &Path,
    fds: prost_types::FileDescriptorSet,
    encoded: &[u8],
    out: &mut Outputs,
) -> Result<(), Error> {
    let mut prost = prost_build::Config::new();
    prost
        .btree_map(["."])
        // pbjson_types carries the well-known types with proto-JSON serde
        // (Durations as "1.5s").
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types")
        .enable_type_names()
        // Every route, service and consumer has a `Plugins`; boxing its
        // fields keeps an unused plugin at one pointer instead of its whole
        // message (10,000 routes: 42 MB down to a few).
        .boxed(".pingora_config.v1.Plugins");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_well_known_types(true)
        .out_dir(scratch)
        .compile_fds_with_config(fds, prost)
        .map_err(io("prost/tonic code generation"))?;

    pbjson_build::Builder::new()
        .register_descriptors(encoded)
        .map_err(|e| Error::Other(format!("pbjson: {e}")))?
        .out_dir(scratch)
        .btree_map(["."])
        .preserve_proto_field_names()
        .build(&[".pingora_config"])
        .map_err(|e| Error::Other(format!("pbjson: {e}")))?;

    let mut names: Vec<PathBuf> = std::fs::read_dir(scratch)
        .map_err(io("reading the scratch directory"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    names.sort();
    for path in names {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let package = name.trim_end_matches(".rs").trim_end_matches(".serde");
        let source = format!("proto/{}/*.proto", package.replace('.', "/"));
        let code = std::fs::read_to_string(&path).map_err(io(path.display().to_string()))?;
        let text = format!("{}\n{}", header("//", &source), rustfmt(scratch, &code)?);
        out.insert(PathBuf::from("config/src/gen").join(&name), text.into_bytes());
    }
    Ok(())
}

/// Formats Rust source with the toolchain's rustfmt (edition 2024). It runs
/// in the scratch directory so that no `rustfmt.toml` around the caller's
/// working directory changes the output.
fn rustfmt(scratch: &Path, code: &str) -> Result<String, Error> {
    let mut child = Command::new("rustfmt")
        .current_dir(scratch)
        .args(["--edition", "2024", "--emit", "stdout", "--quiet", "--config", "max_width=120"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("running rustfmt"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| Error::Other("rustfmt has no stdin".into()))?
        .write_all(code.as_bytes())
        .map_err(io("writing to rustfmt"))?;
    let output = child.wait_with_output().map_err(io("waiting for rustfmt"))?;
    if !output.status.success() {
        return Err(Error::Other(format!("rustfmt failed: {}", String::from_utf8_lossy(&output.stderr))));
    }
    String::from_utf8(output.stdout).map_err(|e| Error::Other(e.to_string()))
}
