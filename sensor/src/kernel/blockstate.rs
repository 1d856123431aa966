//! Drop mode's blocked sources on disk (`drop.state_file`), so that a
//! restart of the service does not give every blocked attacker a free
//! window. The file holds wall-clock expiry times (the kernel's clock
//! restarts with the machine); it is written atomically (a temporary file
//! renamed over it) whenever the set of blocks changes and on exit, and
//! read once at start, where blocks that have ended are left out: an
//! expired block is never revived.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use sensor_common::packet::AddrKey;
use sensor_common::tables::BlockEntry;
use serde::{Deserialize, Serialize};

use crate::alert::ip_addr;

/// The file's layout version.
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    blocks: Vec<SavedBlock>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedBlock {
    src: IpAddr,
    sig_id: u32,
    /// End of the block, nanoseconds since the Unix epoch.
    until_unix_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a blocked-sources file ({reason}); nothing was restored from it", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// A block as the kernel holds it: its source and its entry.
pub type Block = (AddrKey, BlockEntry);

/// Writes `blocks` to `path`; `to_unix_ns` turns the kernel's monotonic
/// expiry into wall-clock time.
pub fn save(
    path: &Path,
    blocks: impl IntoIterator<Item = Block>,
    to_unix_ns: impl Fn(u64) -> u64,
) -> Result<(), StateError> {
    let mut saved: Vec<SavedBlock> = blocks
        .into_iter()
        .map(|(key, entry)| SavedBlock {
            src: ip_addr(key.version, &key.addr),
            sig_id: entry.sig_id,
            until_unix_ns: to_unix_ns(entry.until_ns),
        })
        .collect();
    saved.sort_by_key(|b| (b.src, b.sig_id));
    let text = serde_json::to_string_pretty(&StateFile {
        version: VERSION,
        blocks: saved,
    })
    .expect("plain data serializes");
    let io_error = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text + "\n").map_err(io_error)?;
    std::fs::rename(&temporary, path).map_err(io_error)
}

/// The blocks saved in `path` that have not ended at `now_unix_ns`, with
/// their expiry turned into the kernel's clock by `to_monotonic_ns`. A
/// missing file is no blocks; a file that is not ours is an error and
/// gives none (never part of it).
pub fn load(
    path: &Path,
    now_unix_ns: u64,
    to_monotonic_ns: impl Fn(u64) -> u64,
) -> Result<Vec<Block>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let invalid = |reason: String| StateError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let file: StateFile = serde_json::from_str(&text).map_err(|err| invalid(err.to_string()))?;
    if file.version != VERSION {
        return Err(invalid(format!(
            "version {} (expected {VERSION})",
            file.version
        )));
    }
    Ok(file
        .blocks
        .into_iter()
        .filter(|block| block.until_unix_ns > now_unix_ns)
        .map(|block| {
            let key = crate::rules::compile::addr_key(block.src);
            let entry = BlockEntry {
                until_ns: to_monotonic_ns(block.until_unix_ns),
                sig_id: block.sig_id,
                block_when: sensor_common::tables::BLOCK_RESTORED,
                _pad: [0; 3],
            };
            (key, entry)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn block(last: u8, sig_id: u32, until_ns: u64) -> Block {
        let mut key = AddrKey {
            version: 4,
            ..AddrKey::default()
        };
        key.addr[..4].copy_from_slice(&[198, 51, 100, last]);
        let entry = BlockEntry {
            until_ns,
            sig_id,
            block_when: sensor_common::tables::BLOCK_RESTORED,
            _pad: [0; 3],
        };
        (key, entry)
    }

    #[test]
    fn saved_blocks_come_back_on_the_new_clock_and_ended_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocked.json");
        // Monotonic 1,000 s is wall-clock 1,000,000 s before the restart.
        let offset = 999_000 * SECOND;
        let blocks = [
            block(7, 100001, 1_100 * SECOND),
            block(8, 100002, 1_010 * SECOND),
        ];
        save(&path, blocks, |mono| mono + offset).unwrap();
        // After the restart: 20 s later, and the new monotonic clock is at 5 s.
        let now_unix = 1_000_020 * SECOND;
        let new_offset = now_unix - 5 * SECOND;
        let restored = load(&path, now_unix, |unix| unix - new_offset).unwrap();
        // 198.51.100.8's block ended at 1,010 s: not revived.
        assert_eq!(restored, vec![block(7, 100001, 85 * SECOND)]);
    }

    #[test]
    fn a_missing_file_is_no_blocks_and_a_foreign_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocked.json");
        assert_eq!(load(&path, 0, |t| t).unwrap(), vec![]);
        std::fs::write(&path, "{\"version\":1,\"blocks\":[{\"src\":\"x\"}]}").unwrap();
        let err = load(&path, 0, |t| t).unwrap_err().to_string();
        assert!(
            err.contains("blocked.json: not a blocked-sources file"),
            "{err}"
        );
        std::fs::write(&path, "{\"version\":2,\"blocks\":[]}").unwrap();
        assert!(load(&path, 0, |t| t).is_err());
    }
}
