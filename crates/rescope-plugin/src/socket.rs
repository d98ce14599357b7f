//! The plugin's socket file: created safely, replaced when stale, removed on exit.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use tracing::{debug, info};

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} exists but is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "{path} belongs to uid {owner}, not to this user (uid {me}); remove it or run as its owner"
    )]
    ForeignDirectory { path: PathBuf, owner: u32, me: u32 },
    #[error("cannot make {path} private (mode 0700): {source}")]
    Chmod {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("another process is already serving {path}; stop it first")]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; not touching it")]
    NotASocket { path: PathBuf },
    #[error("cannot remove the stale socket {path}: {source}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the socket path {path} has no parent directory")]
    NoParent { path: PathBuf },
}

/// A bound plugin socket. Dropping it removes the socket file (if it is still the one
/// this process bound) and its directory, when the directory is the plugin's own and
/// is left empty.
#[derive(Debug)]
pub struct PluginSocket {
    path: PathBuf,
    /// The plugin's own directory, removed on drop when empty.
    own_dir: Option<PathBuf>,
    /// Identity of the bound socket file, so a newer instance's socket is kept.
    identity: FileIdentity,
    listener: Option<UnixListener>,
}

impl PluginSocket {
    /// Binds `<root>/<id>/<id>.sock`, creating `root` if missing and `<root>/<id>`
    /// with mode 0700 (tightening an existing one of ours), so only this user and
    /// root can reach the socket.
    pub fn bind_in_root(root: &Path, id: &str) -> Result<Self, SocketError> {
        let dir = root.join(id);
        let path = dir.join(format!("{id}.sock"));
        create_dir_all(root)?;
        private_dir(&dir)?;
        Self::bind_at(path, Some(dir))
    }

    /// Binds exactly `path`, creating missing parent directories (mode 0700) but
    /// leaving existing ones as they are.
    pub fn bind_path(path: &Path) -> Result<Self, SocketError> {
        let parent = path.parent().ok_or_else(|| SocketError::NoParent {
            path: path.to_path_buf(),
        })?;
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|source| SocketError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        Self::bind_at(path.to_path_buf(), None)
    }

    fn bind_at(path: PathBuf, own_dir: Option<PathBuf>) -> Result<Self, SocketError> {
        remove_if_stale(&path)?;
        let listener = UnixListener::bind(&path).map_err(|source| SocketError::Bind {
            path: path.clone(),
            source,
        })?;
        let meta = std::fs::symlink_metadata(&path).map_err(|source| SocketError::Bind {
            path: path.clone(),
            source,
        })?;
        info!(socket = %path.display(), "plugin listening");
        Ok(PluginSocket {
            path,
            own_dir,
            identity: FileIdentity::of(&meta),
            listener: Some(listener),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listener, once; the socket file stays until `self` is dropped.
    pub fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }

    /// Removes the socket file now (also done on drop).
    pub fn remove(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| FileIdentity::of(&m) == self.identity);
        if ours {
            match std::fs::remove_file(&self.path) {
                Ok(()) => info!(socket = %self.path.display(), "plugin socket removed"),
                Err(e) => debug!(socket = %self.path.display(), error = %e, "cannot remove socket"),
            }
        }
        if let Some(dir) = self.own_dir.take() {
            // Fails harmlessly when something else lives there.
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

impl Drop for PluginSocket {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Device, inode and change time: inode numbers are reused at once when a file is
/// replaced, the change time tells the two apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
}

impl FileIdentity {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }
}

fn create_dir_all(path: &Path) -> Result<(), SocketError> {
    std::fs::create_dir_all(path).map_err(|source| SocketError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// Makes `dir` exist as a directory of ours with mode 0700.
fn private_dir(dir: &Path) -> Result<(), SocketError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(SocketError::CreateDir {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    // Not following symlinks: a link planted here must not redirect the socket.
    let meta = std::fs::symlink_metadata(dir).map_err(|source| SocketError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(SocketError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(SocketError::ForeignDirectory {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| SocketError::Chmod {
                path: dir.to_path_buf(),
                source,
            },
        )?;
    }
    Ok(())
}

/// Removes a socket left by a process that is gone; refuses when a process still
/// answers on it or the path is something else.
fn remove_if_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SocketError::RemoveStale {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    if UnixStream::connect(path).is_ok() {
        return Err(SocketError::InUse {
            path: path.to_path_buf(),
        });
    }
    info!(socket = %path.display(), "removing a stale socket left by an earlier run");
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SocketError::RemoveStale {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_goes_in_a_private_directory_and_is_removed_on_drop() {
        let root = tempfile::tempdir().expect("tempdir");
        let plugins = root.path().join("plugins");
        let socket = PluginSocket::bind_in_root(&plugins, "demo").expect("bind");
        let dir = plugins.join("demo");
        assert_eq!(socket.path(), dir.join("demo.sock"));
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(
            std::fs::symlink_metadata(socket.path())
                .expect("socket")
                .file_type()
                .is_socket()
        );
        drop(socket);
        assert!(!dir.exists(), "socket and its directory are gone");
        assert!(plugins.exists(), "the shared root stays");
    }

    #[test]
    fn an_existing_directory_is_made_private() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("demo");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let _socket = PluginSocket::bind_in_root(root.path(), "demo").expect("bind");
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_symlink_in_place_of_the_directory_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("demo")).expect("symlink");
        let err = PluginSocket::bind_in_root(root.path(), "demo").expect_err("refused");
        assert!(matches!(err, SocketError::NotADirectory { .. }), "{err}");
        assert_eq!(std::fs::read_dir(elsewhere.path()).expect("dir").count(), 0);
    }

    #[test]
    fn a_stale_socket_is_replaced() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("demo");
        std::fs::create_dir(&dir).expect("mkdir");
        let path = dir.join("demo.sock");
        // A listener that is closed leaves its file behind, as a crash would.
        drop(UnixListener::bind(&path).expect("bind"));
        assert!(path.exists());
        let socket = PluginSocket::bind_in_root(root.path(), "demo").expect("replaces it");
        assert!(UnixStream::connect(socket.path()).is_ok());
    }

    #[test]
    fn a_live_socket_is_not_taken_over() {
        let root = tempfile::tempdir().expect("tempdir");
        let first = PluginSocket::bind_in_root(root.path(), "demo").expect("bind");
        let err = PluginSocket::bind_in_root(root.path(), "demo").expect_err("in use");
        assert!(matches!(err, SocketError::InUse { .. }), "{err}");
        assert!(first.path().exists(), "the running plugin keeps its socket");
    }

    #[test]
    fn a_regular_file_in_the_way_is_left_alone() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("x.sock");
        std::fs::write(&path, "data").expect("write");
        let err = PluginSocket::bind_path(&path).expect_err("not a socket");
        assert!(matches!(err, SocketError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), "data");
    }

    #[test]
    fn a_newer_instances_socket_survives_an_older_ones_drop() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("p.sock");
        let mut old = PluginSocket::bind_path(&path).expect("bind");
        drop(old.take_listener());
        // A new instance replaces the (now stale) socket...
        let new = PluginSocket::bind_path(&path).expect("rebind");
        // ...and the old one's clean-up must not delete it.
        drop(old);
        assert!(path.exists());
        drop(new);
        assert!(!path.exists());
    }
}
