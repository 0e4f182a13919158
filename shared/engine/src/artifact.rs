//! The model file: a JSON manifest and a payload of named sections, versioned and checksummed.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! "FXGPTMDL"            8 bytes, magic
//! format version        u32
//! manifest length       u32
//! manifest              JSON (ModelInfo + payload layout with the payload's sha256)
//! payload               sections, back to back
//! sha256                32 bytes over everything before it
//! ```
//!
//! The trailing checksum catches any damage, the manifest included; the payload's own sha256
//! is in the manifest as the architecture asks. Files are written to a temporary file in the
//! target directory and renamed, so a model file is either complete or absent.
//!
//! Compatibility: a reader accepts every format version up to [`MODEL_FORMAT_VERSION`],
//! bringing older manifests up to date in [`migrate`]; each released version has a fixture
//! under `tests/fixtures/models/` that must keep loading and predicting the same numbers.

use std::io::Write;
use std::path::{Path, PathBuf};

use forexgpt_protocol::ModelInfo;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MODEL_FORMAT_VERSION: u32 = 1;
pub const MODEL_EXTENSION: &str = "fxm";
const MAGIC: &[u8; 8] = b"FXGPTMDL";
const HEADER_LEN: usize = 16;
const CHECKSUM_LEN: usize = 32;
/// Manifests are small; a larger length field means the file is not ours or is damaged.
const MAX_MANIFEST_LEN: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: not a ForexGPT model file")]
    Foreign { path: String },
    #[error(
        "{path}: written with model format {found} by a newer ForexGPT Workbench; this version reads formats up to {supported}"
    )]
    FutureVersion {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("{path}: truncated ({found} bytes, the header announces {expected})")]
    Truncated {
        path: String,
        expected: usize,
        found: usize,
    },
    #[error("{path}: checksum mismatch, the file is damaged")]
    Checksum { path: String },
    #[error("{path}: invalid manifest: {reason}")]
    Manifest { path: String, reason: String },
    #[error("{path}: section '{name}' is missing or invalid: {reason}")]
    Section {
        path: String,
        name: String,
        reason: String,
    },
    #[error("{context} {path}: {cause}")]
    Io {
        context: &'static str,
        path: String,
        cause: std::io::Error,
    },
}

/// Where each payload section lies, relative to the payload's start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionInfo {
    pub name: String,
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadInfo {
    pub sha256: String,
    pub len: u64,
    pub sections: Vec<SectionInfo>,
}

/// The JSON manifest at the head of every model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub info: ModelInfo,
    pub payload: PayloadInfo,
}

/// A model file read back and verified.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub path: PathBuf,
    /// The version the file was written with (before migration).
    pub format_version: u32,
    pub info: ModelInfo,
    sections: Vec<(String, Vec<u8>)>,
}

impl Artifact {
    /// A section's bytes, or a typed error naming it.
    pub fn section(&self, name: &str) -> Result<&[u8], ArtifactError> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| self.section_error(name, "not in the file".into()))
    }

    pub fn section_error(&self, name: &str, reason: String) -> ArtifactError {
        ArtifactError::Section {
            path: self.path.display().to_string(),
            name: name.to_string(),
            reason,
        }
    }
}

/// Lower-case hexadecimal, as SHA-256 digests are written.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a model file.
pub fn encode(
    info: &ModelInfo,
    sections: &[(&str, Vec<u8>)],
) -> Result<Vec<u8>, serde_json::Error> {
    let mut payload = Vec::new();
    let mut layout = Vec::with_capacity(sections.len());
    for (name, bytes) in sections {
        layout.push(SectionInfo {
            name: (*name).to_string(),
            offset: payload.len() as u64,
            len: bytes.len() as u64,
        });
        payload.extend_from_slice(bytes);
    }
    let manifest = Manifest {
        format_version: MODEL_FORMAT_VERSION,
        info: info.clone(),
        payload: PayloadInfo {
            sha256: hex(&Sha256::digest(&payload)),
            len: payload.len() as u64,
            sections: layout,
        },
    };
    let manifest = serde_json::to_vec_pretty(&manifest)?;
    let mut out = Vec::with_capacity(HEADER_LEN + manifest.len() + payload.len() + CHECKSUM_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&MODEL_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    out.extend_from_slice(&manifest);
    out.extend_from_slice(&payload);
    let checksum = Sha256::digest(&out);
    out.extend_from_slice(&checksum);
    Ok(out)
}

/// Temporary files of unfinished writes start with this; a process killed mid-write leaves
/// one behind, which [`remove_stale_partials`] clears later.
pub const PARTIAL_PREFIX: &str = ".partial-";

/// A file written and synced under a temporary name beside `path`, not yet visible there.
/// Dropping it removes the temporary file.
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl Staged {
    /// Renames the file into place (atomic on one file system).
    pub fn commit(self) -> Result<PathBuf, ArtifactError> {
        let path = self.path;
        self.tmp.persist(&path).map_err(|e| ArtifactError::Io {
            context: "cannot rename into",
            path: path.display().to_string(),
            cause: e.error,
        })?;
        Ok(path)
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    stage(path, bytes)?.commit().map(|_| ())
}

/// Removes temporary files that writes killed mid-way (power loss, SIGKILL) left in `dir`,
/// once they are older than `age`: younger ones may belong to a write still under way in
/// another process. Best effort; returns how many it removed.
pub fn remove_stale_partials(dir: &Path, age: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let stale = entry
            .file_name()
            .to_string_lossy()
            .starts_with(PARTIAL_PREFIX)
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed >= age);
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Writes `bytes` under a temporary name beside `path` and syncs them, without making them
/// visible at `path` yet: several files can be staged, then committed together.
pub fn stage(path: &Path, bytes: &[u8]) -> Result<Staged, ArtifactError> {
    let io = |context, cause| ArtifactError::Io {
        context,
        path: path.display().to_string(),
        cause,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create the directory of", e))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(PARTIAL_PREFIX);
    // Temporary files are private (0600); a saved model is an ordinary file.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(|e| io("cannot create a temporary file for", e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io("cannot write", e))?;
    Ok(Staged {
        tmp,
        path: path.to_path_buf(),
    })
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Reads only the manifest (listing models without verifying payloads is cheap).
pub fn read_manifest(path: &Path) -> Result<(u32, Manifest), ArtifactError> {
    let bytes = read_file(path)?;
    let (version, manifest, _) = parse_head(path, &bytes)?;
    Ok((version, manifest))
}

fn read_file(path: &Path) -> Result<Vec<u8>, ArtifactError> {
    std::fs::read(path).map_err(|cause| ArtifactError::Io {
        context: "cannot read",
        path: path.display().to_string(),
        cause,
    })
}

/// Checks magic, version and length; returns the version, the migrated manifest and where
/// the payload starts.
fn parse_head(path: &Path, bytes: &[u8]) -> Result<(u32, Manifest, usize), ArtifactError> {
    let p = || path.display().to_string();
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(ArtifactError::Foreign { path: p() });
    }
    let version = u32_at(bytes, 8);
    if version == 0 {
        return Err(ArtifactError::Foreign { path: p() });
    }
    if version > MODEL_FORMAT_VERSION {
        return Err(ArtifactError::FutureVersion {
            path: p(),
            found: version,
            supported: MODEL_FORMAT_VERSION,
        });
    }
    let manifest_len = u32_at(bytes, 12) as usize;
    if manifest_len > MAX_MANIFEST_LEN {
        return Err(ArtifactError::Foreign { path: p() });
    }
    let payload_start = HEADER_LEN + manifest_len;
    if bytes.len() < payload_start {
        return Err(ArtifactError::Truncated {
            path: p(),
            expected: payload_start + CHECKSUM_LEN,
            found: bytes.len(),
        });
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes[HEADER_LEN..payload_start])
        .map_err(|e| ArtifactError::Manifest {
            path: p(),
            reason: e.to_string(),
        })?;
    let manifest: Manifest =
        serde_json::from_value(migrate(version, value)).map_err(|e| ArtifactError::Manifest {
            path: p(),
            reason: e.to_string(),
        })?;
    Ok((version, manifest, payload_start))
}

/// Brings a manifest written with format `version` up to [`MODEL_FORMAT_VERSION`]. Version 1
/// is the first; later formats add a step here for each version before them.
fn migrate(version: u32, mut manifest: serde_json::Value) -> serde_json::Value {
    if let Some(v) = manifest.get_mut("format_version") {
        *v = serde_json::Value::from(version.max(MODEL_FORMAT_VERSION));
    }
    manifest
}

/// Reads and verifies a model file: magic, version, length, whole-file checksum, payload
/// checksum and section bounds.
pub fn read(path: &Path) -> Result<Artifact, ArtifactError> {
    let bytes = read_file(path)?;
    let p = || path.display().to_string();
    let (version, manifest, payload_start) = parse_head(path, &bytes)?;
    let expected = payload_start as u64 + manifest.payload.len + CHECKSUM_LEN as u64;
    if (bytes.len() as u64) < expected {
        return Err(ArtifactError::Truncated {
            path: p(),
            expected: expected as usize,
            found: bytes.len(),
        });
    }
    if bytes.len() as u64 > expected {
        return Err(ArtifactError::Manifest {
            path: p(),
            reason: format!(
                "{} bytes after the end announced by the manifest",
                bytes.len() as u64 - expected
            ),
        });
    }
    let body_end = bytes.len() - CHECKSUM_LEN;
    if Sha256::digest(&bytes[..body_end]).as_slice() != &bytes[body_end..] {
        return Err(ArtifactError::Checksum { path: p() });
    }
    let payload = &bytes[payload_start..body_end];
    if hex(&Sha256::digest(payload)) != manifest.payload.sha256 {
        return Err(ArtifactError::Checksum { path: p() });
    }
    let mut sections = Vec::with_capacity(manifest.payload.sections.len());
    for s in &manifest.payload.sections {
        let end = s
            .offset
            .checked_add(s.len)
            .filter(|&e| e <= payload.len() as u64);
        let Some(end) = end else {
            return Err(ArtifactError::Section {
                path: p(),
                name: s.name.clone(),
                reason: "extends past the payload".into(),
            });
        };
        sections.push((
            s.name.clone(),
            payload[s.offset as usize..end as usize].to_vec(),
        ));
    }
    Ok(Artifact {
        path: path.to_path_buf(),
        format_version: version,
        info: manifest.info,
        sections,
    })
}
