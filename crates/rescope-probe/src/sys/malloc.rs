//! The C allocator's settings for a long-running probe.
//!
//! glibc gives threads their own allocation arenas (up to eight per core). The probe
//! builds reports on tokio's blocking threads and frees them on its workers, so each
//! arena keeps its own high-water mark of freed memory: measured on Scope's benchmark
//! scenario, capping the arenas at two took the probe's resident memory from about
//! 51 MiB to 37 MiB at the same CPU time (docs/performance.md, "Probe overhead").
//! The app has the same pattern at a larger scale (reports decoded on tokio's
//! workers, views built on two rendering threads): at 100 simulated hosts its peak
//! resident memory was 2.5 GB with glibc's default and 1.7 GB with two arenas
//! (docs/performance.md, "Fleet"). `rescope` caps the arenas for every daemon.

/// Arenas kept when the environment does not say (`MALLOC_ARENA_MAX`).
const ARENAS: i32 = 2;

/// Caps glibc's allocation arenas, unless `MALLOC_ARENA_MAX` is set (then glibc has
/// already applied it). Call early, before threads start allocating. Does nothing
/// with other C libraries.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator tuning; M_ARENA_MAX with a positive
        // value is valid at any time, and arenas already created stay usable.
        #[allow(unsafe_code)]
        let ok = unsafe { nix::libc::mallopt(nix::libc::M_ARENA_MAX, ARENAS) } == 1;
        tracing::debug!(arenas = ARENAS, ok, "capped the C allocator's arenas");
    }
}
