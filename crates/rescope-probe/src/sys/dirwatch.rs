//! Wakes a task when anything changes in a directory tree (inotify), so the plugin
//! registry sees a new or removed socket at once instead of at its next rescan.
//!
//! One thread per watched tree. It watches the root and every subdirectory down to
//! `max_depth`, re-reading the tree after each batch of events so new subdirectories
//! are watched too, and stops when the receiving side is dropped. The periodic rescan
//! stays the safety net: a tree that cannot be watched (no inotify, too many watches)
//! only loses the promptness.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// How often the thread checks that someone still listens, when nothing happens.
const IDLE_CHECK: Duration = Duration::from_secs(1);

fn interesting() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

/// Directories under `root` (itself included) down to `max_depth` levels.
fn directories(root: &Path, max_depth: usize) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    let mut depth_of = vec![0usize];
    while i < out.len() {
        let (dir, depth) = (out[i].clone(), depth_of[i]);
        i += 1;
        if depth >= max_depth {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push(entry.path());
                depth_of.push(depth + 1);
            }
        }
    }
    out
}

/// Watches `root` and its subdirectories; sends `()` (coalesced) on every change.
/// Returns the receiver, or an error when inotify is unavailable.
pub fn watch(root: &Path, max_depth: usize) -> nix::Result<mpsc::Receiver<()>> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
    let (tx, rx) = mpsc::channel(1);
    let root = root.to_path_buf();
    // The first watches are in place before this returns: nothing after it is missed.
    let mut watcher = Watcher {
        inotify,
        watched: Vec::new(),
        warned: false,
    };
    watcher.rewatch(&root, max_depth);
    let spawned = std::thread::Builder::new()
        .name("plugin-dirwatch".into())
        .spawn(move || run(watcher, &root, max_depth, &tx));
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the plugin directory watcher; new plugins are found by the periodic rescan");
    }
    Ok(rx)
}

struct Watcher {
    inotify: Inotify,
    watched: Vec<(PathBuf, WatchDescriptor)>,
    warned: bool,
}

impl Watcher {
    /// Watches every directory of the tree not watched yet.
    fn rewatch(&mut self, root: &Path, max_depth: usize) {
        for dir in directories(root, max_depth) {
            if self.watched.iter().any(|(p, _)| *p == dir) {
                continue;
            }
            match self.inotify.add_watch(&dir, interesting()) {
                Ok(wd) => self.watched.push((dir, wd)),
                Err(e) if !self.warned => {
                    self.warned = true;
                    warn!(dir = %dir.display(), error = %e, "cannot watch a plugin directory; its plugins are found by the periodic rescan");
                }
                Err(_) => {}
            }
        }
    }
}

fn run(mut w: Watcher, root: &Path, max_depth: usize, tx: &mpsc::Sender<()>) {
    loop {
        if tx.is_closed() {
            return;
        }
        let ready = {
            let mut fds = [PollFd::new(w.inotify.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(IDLE_CHECK).unwrap_or(PollTimeout::MAX);
            poll(&mut fds, timeout).unwrap_or(0)
        };
        if ready == 0 {
            // The root may have been created since: watch it when it appears.
            if w.watched.is_empty() {
                w.rewatch(root, max_depth);
            }
            continue;
        }
        let mut gone = Vec::new();
        while let Ok(events) = w.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                if e.mask
                    .intersects(AddWatchFlags::IN_IGNORED | AddWatchFlags::IN_DELETE_SELF)
                {
                    gone.push(e.wd);
                }
            }
        }
        w.watched.retain(|(_, wd)| !gone.contains(wd));
        w.rewatch(root, max_depth);
        debug!("plugin directory changed");
        // A full channel already holds a wake-up: nothing is lost by dropping this one.
        let _ = tx.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_in_the_root_and_in_new_subdirectories_wake_the_receiver() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rx = watch(dir.path(), 4).expect("inotify");
        std::fs::create_dir(dir.path().join("plugin")).expect("mkdir");
        assert!(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .is_ok(),
            "no wake-up for a new subdirectory"
        );
        // Let the watcher add the new subdirectory, then change something inside it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while rx.try_recv().is_ok() {}
        let listener =
            std::os::unix::net::UnixListener::bind(dir.path().join("plugin/p.sock")).expect("bind");
        assert!(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .is_ok(),
            "no wake-up for a socket in a subdirectory"
        );
        drop(listener);
        while rx.try_recv().is_ok() {}
        std::fs::remove_file(dir.path().join("plugin/p.sock")).expect("rm");
        assert!(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .is_ok(),
            "no wake-up for a removed socket"
        );
    }

    #[test]
    fn directories_are_listed_to_the_depth_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("a/b/c")).expect("mkdir");
        assert_eq!(directories(dir.path(), 0).len(), 1);
        assert_eq!(directories(dir.path(), 2).len(), 3);
        assert_eq!(directories(dir.path(), 9).len(), 4);
    }
}
