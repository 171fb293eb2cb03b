//! The data directory (`log.dirs`) and its lock.
//!
//! Two brokers on one directory would both assign offsets to the same partitions and each
//! overwrite what the other acknowledged. Like Kafka, a broker takes an exclusive lock on
//! `<log.dirs>/.lock` before it reads anything and holds it until the process ends; a second
//! broker is refused at start with the directory and the holder's process id. The lock is an
//! `flock`, so the kernel drops it when the holder dies (SIGKILL included): no stale lock to
//! clean up by hand.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The lock file's name, as Kafka names it.
pub const LOCK_FILE: &str = ".lock";

#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("log.dirs: {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("log.dirs: cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("log.dirs: cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "log.dirs: {dir} is in use by another broker ({holder}); \
         stop it or give this broker its own log.dirs"
    )]
    InUse { dir: PathBuf, holder: String },
}

/// A locked data directory. The lock lasts as long as this value (and the process).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the directory if needed and takes its lock.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        if path.exists() && !path.is_dir() {
            return Err(DataDirError::NotADirectory(path.to_path_buf()));
        }
        std::fs::create_dir_all(path).map_err(|source| match source.kind() {
            // A component of the path is a file ("/etc/hosts/data").
            std::io::ErrorKind::NotADirectory => DataDirError::NotADirectory(path.to_path_buf()),
            _ => DataDirError::Create {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let lock_path = path.join(LOCK_FILE);
        let lock_err = |source| DataDirError::Lock {
            path: lock_path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(lock_err)?;
        // SAFETY: flock on a descriptor we own; it neither reads nor writes our memory.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(DataDirError::InUse {
                    dir: path.to_path_buf(),
                    holder: holder_of(&mut file),
                });
            }
            return Err(lock_err(err));
        }
        // The holder's pid, for the message a second broker prints.
        file.set_len(0).map_err(lock_err)?;
        writeln!(file, "{}", std::process::id()).map_err(lock_err)?;
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Locks every directory of `log.dirs`, in order.
pub fn open_all(paths: &[PathBuf]) -> Result<Vec<DataDir>, DataDirError> {
    paths.iter().map(|p| DataDir::open(p)).collect()
}

/// Whether `name`, an entry of a log directory, is a partition's directory
/// (`<topic>-<partition>`; the metadata log's is not).
pub fn is_partition_dir_name(name: &str) -> bool {
    !name.starts_with("__cluster_metadata")
        && name
            .rsplit_once('-')
            .is_some_and(|(_, p)| p.parse::<u32>().is_ok())
}

/// Where the log of the partition directory `name` lives: the log directory that already
/// holds it, or else the one holding the fewest partitions, the earlier on a tie (Kafka's
/// LogManager.nextLogDirs). Counting reads the directories: partitions are created rarely,
/// and a directory is the one record of placement that survives a crash. A new partition's
/// directory is made here, under a process-wide lock, so shards placing partitions at the same
/// moment each count the others' (without it two shards could both pick the same directory).
pub fn partition_dir(dirs: &[PathBuf], name: &str) -> PathBuf {
    if let [only] = dirs {
        return only.join(name);
    }
    static PLACING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _placing = PLACING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_dir()) {
        return existing;
    }
    let partitions = |dir: &PathBuf| {
        std::fs::read_dir(dir).map_or(usize::MAX, |entries| {
            entries
                .flatten()
                .filter(|e| {
                    e.file_type().is_ok_and(|t| t.is_dir())
                        && is_partition_dir_name(&e.file_name().to_string_lossy())
                })
                .count()
        })
    };
    let fewest = dirs
        .iter()
        .enumerate()
        .min_by_key(|(i, d)| (partitions(d), *i))
        .map_or(&dirs[0], |(_, d)| d);
    let chosen = fewest.join(name);
    // If this fails (a full or failed device), opening the log reports it.
    let _ = std::fs::create_dir(&chosen);
    chosen
}

/// "process 1234", from the pid the holder wrote into the lock file.
fn holder_of(file: &mut File) -> String {
    let mut text = String::new();
    let pid = file
        .rewind()
        .and_then(|_| file.read_to_string(&mut text))
        .ok()
        .and_then(|_| text.trim().parse::<u32>().ok());
    match pid {
        Some(pid) => format!("process {pid}"),
        None => "a process that has not written its id yet".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = DataDir::open(&data).unwrap();
        // flock locks belong to the open file description, so a second open in the same
        // process conflicts just as another process would.
        let err = DataDir::open(&data).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataDirError::InUse { .. }), "{msg}");
        assert!(
            msg.contains(&format!("process {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&data.display().to_string()), "{msg}");
        drop(first);
        DataDir::open(&data).expect("lock released with its holder");
    }

    #[test]
    fn a_partition_goes_where_it_is_or_to_the_emptiest_directory() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        let dirs = vec![a.clone(), b.clone()];
        open_all(&dirs).unwrap();
        // A tie goes to the first; the metadata log and other files are not partitions.
        std::fs::create_dir(a.join("__cluster_metadata-0")).unwrap();
        std::fs::write(b.join("t-0"), b"a file").unwrap();
        // The chosen directory is made at once, so the next placement counts it.
        assert_eq!(partition_dir(&dirs, "t-0"), a.join("t-0"));
        assert!(a.join("t-0").is_dir());
        assert_eq!(partition_dir(&dirs, "t-0"), a.join("t-0"), "where it is");
        assert_eq!(partition_dir(&dirs, "t-1"), b.join("t-1"), "fewest");
        std::fs::create_dir(b.join("u-0")).unwrap();
        assert_eq!(partition_dir(&dirs, "t-2"), a.join("t-2"));
        assert_eq!(partition_dir(&dirs, "u-0"), b.join("u-0"));
        assert_eq!(partition_dir(&dirs[..1], "u-0"), a.join("u-0"), "one dir");
        assert!(is_partition_dir_name("my-topic-12"));
        assert!(!is_partition_dir_name("__cluster_metadata-0"));
        assert!(!is_partition_dir_name("meta.properties"));
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let msg = DataDir::open(&file).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!("log.dirs: {} is not a directory", file.display())
        );
        let below = file.join("data");
        let msg = DataDir::open(&below).unwrap_err().to_string();
        assert!(msg.starts_with("log.dirs: "), "{msg}");
        assert!(msg.contains("not a directory"), "{msg}");
    }
}
