//! Runs the official protoc plugins (`protoc-gen-go`, `protoc-gen-go-grpc`,
//! `protoc-gen-es`) without protoc: the `CodeGeneratorRequest` is built here
//! from the descriptor set protox compiled, and the plugin is run as a
//! subprocess speaking the plugin protocol on stdin/stdout.
//!
//! The files are passed to the plugin as the exact bytes protox encoded, not
//! re-encoded through `prost-types`, which would drop the custom rule options
//! (extensions): the Go and TS validators read them back from the
//! descriptors embedded in the generated code.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use prost::Message as _;

use crate::{Error, io};

/// `google.protobuf.FileDescriptorSet`, each file kept as its encoded bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawFileSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// `google.protobuf.compiler.CodeGeneratorRequest`, files as encoded bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawRequest {
    #[prost(string, repeated, tag = "1")]
    file_to_generate: Vec<String>,
    #[prost(string, optional, tag = "2")]
    parameter: Option<String>,
    #[prost(bytes = "vec", repeated, tag = "15")]
    proto_file: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "17")]
    source_file_descriptors: Vec<Vec<u8>>,
}

/// The encoded descriptor set, split into files (in dependency order, as
/// protox writes them) with their names.
pub struct FileSet {
    files: Vec<(String, Vec<u8>)>,
}

impl FileSet {
    pub fn new(encoded: &[u8]) -> Result<FileSet, Error> {
        let set = RawFileSet::decode(encoded).map_err(|e| Error::Other(format!("decoding the descriptor set: {e}")))?;
        let mut files = Vec::with_capacity(set.file.len());
        for bytes in set.file {
            let proto = prost_types::FileDescriptorProto::decode(bytes.as_slice())
                .map_err(|e| Error::Other(format!("decoding a file descriptor: {e}")))?;
            files.push((proto.name.unwrap_or_default(), bytes));
        }
        Ok(FileSet { files })
    }

    /// Our own files (not the google/protobuf imports), sorted.
    pub fn own_files(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.files.iter().map(|(n, _)| n.clone()).filter(|n| !n.starts_with("google/")).collect();
        names.sort();
        names
    }
}

/// One plugin: how to find it and how to call it.
pub struct Plugin {
    /// The executable name, for example `protoc-gen-go`.
    pub name: &'static str,
    /// Environment variable that overrides where it is.
    pub env: &'static str,
    /// Where `scripts/tools.sh` installs it, relative to the repository root.
    pub installed_at: &'static str,
    /// The plugin parameter (`--go_opt` in protoc terms).
    pub parameter: &'static str,
}

/// The Go message plugin, pinned by scripts/tools.sh.
pub const GO: Plugin = Plugin {
    name: "protoc-gen-go",
    env: "PROTOC_GEN_GO",
    installed_at: ".tools/bin/protoc-gen-go",
    parameter: "module=github.com/pingora-config/pingora-config/clients/go",
};

/// The gRPC-Go service plugin, pinned by scripts/tools.sh.
pub const GO_GRPC: Plugin = Plugin {
    name: "protoc-gen-go-grpc",
    env: "PROTOC_GEN_GO_GRPC",
    installed_at: ".tools/bin/protoc-gen-go-grpc",
    parameter: "module=github.com/pingora-config/pingora-config/clients/go",
};

/// The protobuf-es v2 plugin, pinned by clients/ts/package-lock.json.
pub const ES: Plugin = Plugin {
    name: "protoc-gen-es",
    env: "PROTOC_GEN_ES",
    installed_at: "clients/ts/node_modules/.bin/protoc-gen-es",
    parameter: "target=ts,import_extension=js",
};

impl Plugin {
    /// The executable: `$ENV`, else under `root`, else under the repository
    /// this codegen was built from (so a scratch copy of `proto/` works).
    fn locate(&self, root: &Path) -> Result<PathBuf, Error> {
        if let Some(p) = std::env::var_os(self.env).filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        let home = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for base in [root, home.as_path()] {
            let p = base.join(self.installed_at);
            if p.is_file() {
                return Ok(p);
            }
        }
        Err(Error::Other(format!(
            "{} is not installed: run `make tools` (scripts/tools.sh installs the pinned version into {}) or set {}",
            self.name, self.installed_at, self.env
        )))
    }

    /// Runs the plugin on `files` and returns the files it generates, by the
    /// name it gives them.
    pub fn run(&self, root: &Path, set: &FileSet, files: &[String]) -> Result<Vec<(String, String)>, Error> {
        let exe = self.locate(root)?;
        let request = RawRequest {
            file_to_generate: files.to_vec(),
            parameter: Some(self.parameter.to_owned()),
            proto_file: set.files.iter().map(|(_, b)| b.clone()).collect(),
            source_file_descriptors: set
                .files
                .iter()
                .filter(|(n, _)| files.contains(n))
                .map(|(_, b)| b.clone())
                .collect(),
        }
        .encode_to_vec();
        let context = format!("running {}", exe.display());
        let mut child = Command::new(&exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(context.clone()))?;
        let mut stdin = child.stdin.take().ok_or_else(|| Error::Other(format!("{context}: no stdin")))?;
        let writer = std::thread::spawn(move || stdin.write_all(&request));
        let output = child.wait_with_output().map_err(io(context.clone()))?;
        writer
            .join()
            .map_err(|_| Error::Other(format!("{context}: the writer thread panicked")))?
            .map_err(io(context.clone()))?;
        if !output.status.success() {
            return Err(Error::Other(format!(
                "{context}: {}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let response = prost_types::compiler::CodeGeneratorResponse::decode(output.stdout.as_slice())
            .map_err(|e| Error::Other(format!("{context}: bad response: {e}")))?;
        if let Some(err) = response.error {
            return Err(Error::Other(format!("{}: {err}", self.name)));
        }
        let mut out = Vec::new();
        for f in response.file {
            if f.insertion_point.as_deref().is_some_and(|p| !p.is_empty()) {
                return Err(Error::Other(format!("{}: insertion points are not supported", self.name)));
            }
            out.push((f.name.unwrap_or_default(), f.content.unwrap_or_default()));
        }
        Ok(out)
    }
}
