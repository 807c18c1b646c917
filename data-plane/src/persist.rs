//! The last good snapshot on local disk, so a data plane that starts while every
//! control plane is away still serves (static stability).
//!
//! The file holds the snapshot exactly as the control plane sent it: provider secrets
//! stay sealed, and only a process holding the key-encryption key can open them.
//! Layout: `SYSNAP1\n`, the CRC-32 of the payload (4 bytes, little endian), then the
//! protobuf `Snapshot`. A write goes to a temporary file that is synced and renamed
//! over the old one, so a crash leaves the previous snapshot or the new one, never a
//! mix.

use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;
use switchyard_proto::v1 as pb;

const MAGIC: &[u8; 8] = b"SYSNAP1\n";

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("snapshot file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot file {0} is not a Switchyard snapshot")]
    NotASnapshot(PathBuf),
    #[error("snapshot file {0} is damaged (checksum mismatch)")]
    Damaged(PathBuf),
    #[error("snapshot file {path} does not decode: {source}")]
    Decode {
        path: PathBuf,
        source: prost::DecodeError,
    },
}

#[derive(Clone, Debug)]
pub struct SnapshotFile {
    path: PathBuf,
}

impl SnapshotFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The persisted snapshot; `None` when there is no file yet.
    pub fn load(&self) -> Result<Option<pb::Snapshot>, PersistError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(self.io(source)),
        };
        let payload = bytes
            .strip_prefix(MAGIC.as_slice())
            .and_then(|rest| rest.split_first_chunk::<4>())
            .ok_or_else(|| PersistError::NotASnapshot(self.path.clone()))?;
        let (crc, payload) = payload;
        if u32::from_le_bytes(*crc) != crc32fast::hash(payload) {
            return Err(PersistError::Damaged(self.path.clone()));
        }
        pb::Snapshot::decode(payload)
            .map(Some)
            .map_err(|source| PersistError::Decode {
                path: self.path.clone(),
                source,
            })
    }

    /// Replace the persisted snapshot with `encoded` (a protobuf `Snapshot`).
    pub fn save(&self, encoded: &[u8]) -> Result<(), PersistError> {
        let tmp = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(&crc32fast::hash(encoded).to_le_bytes())?;
            file.write_all(encoded)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|source| self.io(source))
    }

    fn io(&self, source: std::io::Error) -> PersistError {
        PersistError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(version: u64) -> pb::Snapshot {
        pb::Snapshot {
            version,
            ..Default::default()
        }
    }

    #[test]
    fn saves_loads_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path().join("nested/snapshot.bin"));
        assert!(file.load().unwrap().is_none());
        file.save(&snapshot(3).encode_to_vec()).unwrap();
        assert_eq!(file.load().unwrap().map(|s| s.version), Some(3));
        file.save(&snapshot(4).encode_to_vec()).unwrap();
        assert_eq!(file.load().unwrap().map(|s| s.version), Some(4));
        assert!(!file.path().with_extension("tmp").exists());
    }

    #[test]
    fn refuses_what_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path().join("snapshot.bin"));
        std::fs::write(file.path(), b"hello").unwrap();
        assert!(matches!(file.load(), Err(PersistError::NotASnapshot(_))));
        file.save(&snapshot(9).encode_to_vec()).unwrap();
        let mut bytes = std::fs::read(file.path()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(file.path(), &bytes).unwrap();
        assert!(matches!(file.load(), Err(PersistError::Damaged(_))));
        // Cut short: the checksum no longer matches either.
        file.save(&snapshot(9).encode_to_vec()).unwrap();
        let bytes = std::fs::read(file.path()).unwrap();
        std::fs::write(file.path(), &bytes[..bytes.len() - 1]).unwrap();
        assert!(file.load().is_err());
    }
}
