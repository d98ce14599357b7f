//! A network namespace's TCP sockets kept up to date from the kernel's state changes
//! ([`crate::sys::tcptrack`]) instead of a full sock_diag dump every tick.
//!
//! [`SocketTable`] holds the sockets of the namespace's last dump. Each tick, the
//! namespace's changes are applied in order: a socket that left the states the probe
//! reports is removed; one that entered them, or moved between them, is asked for
//! with one exact sock_diag request (which gives its inode and owner's uid, as a dump
//! would). Anything the changes cannot say exactly sends the caller back to a full
//! dump: two sockets with the same addresses (`SO_REUSEPORT` listeners), a connecting
//! socket whose port was still unknown a tick later, more changes than a dump costs.
//!
//! [`ChangeFeed`] owns the tracker: it loads it lazily (logging once why it could
//! not), drains it once per tick and hands each namespace its share of the changes.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use tracing::{debug, warn};

use crate::sys::sockdiag::{
    CONNECTION_AND_LISTEN_STATES, ExactSocket, TcpSocket, TcpState, states_mask,
};
use crate::sys::tcptrack::{BPF_OBJECT, StateChange, TcpTracker};

/// Ticks during which a socket not accepted yet (no inode) is asked for again, to
/// learn its inode once a process accepts it. Later, the periodic dump does.
const UNACCEPTED_TICKS: u64 = 5;
/// Exact requests per tick that are always cheaper than a dump; beyond this and an
/// eighth of the table, the namespace is dumped instead.
const MIN_LOOKUP_BUDGET: usize = 64;

/// A socket's identity in its namespace: its canonical addresses and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketKey {
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
}

impl SocketKey {
    pub fn of(socket: &TcpSocket) -> Self {
        SocketKey {
            local: (socket.local_ip, socket.local_port),
            remote: (socket.remote_ip, socket.remote_port),
        }
    }

    pub fn of_exact(socket: &ExactSocket) -> Self {
        SocketKey {
            local: (socket.local_ip.to_canonical(), socket.local_port),
            remote: (socket.remote_ip.to_canonical(), socket.remote_port),
        }
    }
}

/// Whether sockets in `state` are in the table (those a dump asks for).
pub fn is_tracked(state: TcpState) -> bool {
    let bit = states_mask(&[state]);
    bit != 0 && states_mask(CONNECTION_AND_LISTEN_STATES) & bit == bit
}

/// Whether a socket in `state` without an inode may still get one (it waits in a
/// listener's accept queue).
fn may_be_accepted(state: TcpState) -> bool {
    matches!(
        state,
        TcpState::Established | TcpState::CloseWait | TcpState::SynRecv
    )
}

/// What applying a tick's changes did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Nothing to do: the table is as it was.
    Unchanged,
    /// The table was updated with this many exact requests.
    Updated { lookups: usize },
    /// The changes cannot be applied exactly: dump the namespace.
    NeedsDump(&'static str),
}

/// One namespace's TCP sockets (see the module documentation).
#[derive(Debug, Default)]
pub struct SocketTable {
    sockets: Vec<TcpSocket>,
    /// Position of each socket in `sockets` (of the first, for duplicates).
    index: HashMap<SocketKey, usize>,
    /// Addresses held by more than one socket.
    duplicates: HashSet<SocketKey>,
    /// Whether the table came from a dump made while changes were being followed,
    /// and every change since was applied.
    synced: bool,
    /// A change touched the table since its last dump.
    changed: bool,
    /// Sockets that entered a reported state before they had a port, by kernel
    /// address, with the tick the change was seen.
    unnamed: HashMap<u64, u64>,
    /// Sockets without an inode yet, asked for again until `UNACCEPTED_TICKS` after
    /// they appeared.
    unaccepted: HashMap<SocketKey, (u64, ExactSocket)>,
    /// Per-tick scratch: sockets to remove (`None`) or to ask for, in order.
    touched: Vec<(SocketKey, Option<ExactSocket>)>,
    touched_at: HashMap<SocketKey, usize>,
}

impl SocketTable {
    pub fn sockets(&self) -> &[TcpSocket] {
        &self.sockets
    }

    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Whether a dump now could tell nothing the table does not: it is synced, no
    /// change touched it since its last dump, and none of its sockets may still get
    /// an inode (a connection waiting in a listener's accept queue gets one when a
    /// process accepts it, which is no state change).
    pub fn is_quiet(&self) -> bool {
        self.synced
            && !self.changed
            && self.unnamed.is_empty()
            && self.unaccepted.is_empty()
            && !self
                .sockets
                .iter()
                .any(|s| s.inode == 0 && may_be_accepted(s.state))
    }

    /// Forgets every socket (a failed dump).
    pub fn clear(&mut self) {
        self.sockets.clear();
        self.index.clear();
        self.duplicates.clear();
        self.unnamed.clear();
        self.unaccepted.clear();
        self.synced = false;
        self.changed = false;
    }

    /// Replaces the table by what `dump` appends to an empty list. `synced` says
    /// whether changes are being followed since before the dump began. On error the
    /// table is left empty.
    ///
    /// Sockets the table held already keep their places (a vanished one's place
    /// goes to the last, as when a change removes it), and new ones come last: the
    /// endpoint graph compares a tick's sockets with the last tick's place by place,
    /// and the kernel's dump order is not the table's.
    pub fn replace_with_dump<E>(
        &mut self,
        synced: bool,
        dump: impl FnOnce(&mut Vec<TcpSocket>) -> Result<(), E>,
    ) -> Result<(), E> {
        let previous = std::mem::take(&mut self.index);
        let had = self.sockets.len();
        self.clear();
        if let Err(e) = dump(&mut self.sockets) {
            self.sockets.clear();
            return Err(e);
        }
        if had > 0 && !self.sockets.is_empty() {
            let mut places: Vec<Option<TcpSocket>> = vec![None; had];
            let mut fresh = Vec::new();
            for socket in self.sockets.drain(..) {
                match previous.get(&SocketKey::of(&socket)) {
                    Some(&i) if i < had && places[i].is_none() => places[i] = Some(socket),
                    _ => fresh.push(socket),
                }
            }
            let mut i = 0;
            while i < places.len() {
                if places[i].is_none() {
                    places.swap_remove(i);
                } else {
                    i += 1;
                }
            }
            self.sockets.extend(places.into_iter().flatten());
            self.sockets.append(&mut fresh);
        }
        for (i, socket) in self.sockets.iter().enumerate() {
            let key = SocketKey::of(socket);
            match self.index.entry(key) {
                Entry::Occupied(_) => {
                    self.duplicates.insert(key);
                }
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
        }
        self.synced = synced;
        Ok(())
    }

    /// Applies one tick's changes of this namespace, oldest first, asking for new
    /// and changed sockets with `lookup` (an exact sock_diag request). On an error
    /// from `lookup` the table is no longer synced and the error is returned; dump.
    pub fn apply<E>(
        &mut self,
        changes: &[StateChange],
        tick: u64,
        mut lookup: impl FnMut(&ExactSocket) -> Result<Option<TcpSocket>, E>,
    ) -> Result<Update, E> {
        match self.plan(changes, tick) {
            Ok(()) => {}
            Err(reason) => {
                self.synced = false;
                return Ok(Update::NeedsDump(reason));
            }
        }
        if self.touched.is_empty() {
            return Ok(Update::Unchanged);
        }
        self.changed = true;
        let mut lookups = 0;
        let touched = std::mem::take(&mut self.touched);
        for (key, wanted) in &touched {
            let Some(exact) = wanted else {
                self.remove(key);
                continue;
            };
            lookups += 1;
            let found = match lookup(exact) {
                Ok(found) => found,
                Err(e) => {
                    self.synced = false;
                    self.touched = touched;
                    return Err(e);
                }
            };
            match found {
                // A request for a connection that no longer exists is answered with
                // the listener on its port, if there is one: the connection is gone.
                Some(socket) if SocketKey::of(&socket) == *key && is_tracked(socket.state) => {
                    if socket.inode == 0 && may_be_accepted(socket.state) {
                        self.unaccepted.entry(*key).or_insert((tick, *exact));
                    } else {
                        self.unaccepted.remove(key);
                    }
                    self.upsert(*key, socket);
                }
                _ => self.remove(key),
            }
        }
        self.touched = touched;
        Ok(Update::Updated { lookups })
    }

    /// Turns the changes into the list of sockets to remove or ask for (`touched`),
    /// or says why only a dump will do.
    fn plan(&mut self, changes: &[StateChange], tick: u64) -> Result<(), &'static str> {
        self.touched.clear();
        self.touched_at.clear();
        for change in changes {
            let wanted = is_tracked(change.new);
            if change.socket.local_port == 0 {
                // Connecting (or listening without bind) before the kernel picked a
                // port: its next change names it.
                if wanted {
                    self.unnamed.insert(change.skaddr, tick);
                } else {
                    self.unnamed.remove(&change.skaddr);
                }
                continue;
            }
            self.unnamed.remove(&change.skaddr);
            let key = SocketKey::of_exact(&change.socket);
            if self.duplicates.contains(&key) {
                return Err("a change to one of several sockets with the same addresses");
            }
            let present = match self.touched_at.get(&key) {
                Some(&i) => self.touched[i].1.is_some(),
                None => self.index.contains_key(&key),
            };
            if wanted && change.new == TcpState::Listen && change.old != TcpState::Listen && present
            {
                return Err("a second listener on the same address");
            }
            let slot = *self.touched_at.entry(key).or_insert_with(|| {
                self.touched.push((key, None));
                self.touched.len() - 1
            });
            self.touched[slot].1 = wanted.then_some(change.socket);
        }
        if self.unnamed.values().any(|seen| *seen < tick) {
            return Err("a connecting socket still had no port a tick later");
        }
        self.unaccepted
            .retain(|_, (since, _)| *since + UNACCEPTED_TICKS > tick);
        for (key, (_, exact)) in &self.unaccepted {
            if !self.touched_at.contains_key(key) {
                self.touched_at.insert(*key, self.touched.len());
                self.touched.push((*key, Some(*exact)));
            }
        }
        let asks = self.touched.iter().filter(|(_, w)| w.is_some()).count();
        if asks > MIN_LOOKUP_BUDGET.max(self.sockets.len() / 8) {
            return Err("more changes than a dump costs");
        }
        Ok(())
    }

    fn upsert(&mut self, key: SocketKey, socket: TcpSocket) {
        match self.index.get(&key) {
            Some(&i) => self.sockets[i] = socket,
            None => {
                self.index.insert(key, self.sockets.len());
                self.sockets.push(socket);
            }
        }
    }

    fn remove(&mut self, key: &SocketKey) {
        self.unaccepted.remove(key);
        let Some(i) = self.index.remove(key) else {
            return;
        };
        self.sockets.swap_remove(i);
        if let Some(moved) = self.sockets.get(i) {
            self.index.insert(SocketKey::of(moved), i);
        }
    }
}

/// Counters of how namespaces were kept up to date while the tracker ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackingStats {
    /// Ticks × namespaces updated from changes (with at least one change).
    pub updates: u64,
    /// Exact sock_diag requests made by those updates.
    pub lookups: u64,
    /// Full dumps made while the tracker ran (first, periodic, or fallback).
    pub dumps: u64,
    /// Drains that found changes lost (every namespace was dumped).
    pub losses: u64,
}

#[derive(Debug)]
enum FeedState {
    /// Load at the next drain, with this ring buffer size (`None`: the object's).
    Wanted(Option<u32>),
    Running(Box<TcpTracker>),
    /// Turned off, or loading or reading failed (logged once).
    Off,
}

/// The TCP change tracker as the endpoint reporter uses it (see the module docs).
#[derive(Debug)]
pub struct ChangeFeed {
    state: FeedState,
    /// This tick's changes, grouped by namespace (stable, so each socket's changes
    /// stay in order).
    changes: Vec<StateChange>,
    lost: bool,
    pub stats: TrackingStats,
}

impl ChangeFeed {
    /// A feed that loads the tracker at its first drain when `enabled`.
    pub fn new(enabled: bool) -> Self {
        ChangeFeed {
            state: if enabled {
                FeedState::Wanted(None)
            } else {
                FeedState::Off
            },
            changes: Vec::new(),
            lost: false,
            stats: TrackingStats::default(),
        }
    }

    /// Turns tracking off, or on with a ring buffer of `ring_bytes` (`None`: the
    /// default size). Takes effect at the next drain.
    pub fn configure(&mut self, enabled: bool, ring_bytes: Option<u32>) {
        self.state = if enabled {
            FeedState::Wanted(ring_bytes)
        } else {
            FeedState::Off
        };
        self.changes.clear();
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, FeedState::Running(_))
    }

    /// Reads the changes queued since the last tick. Call once per tick, before any
    /// namespace is updated or dumped.
    pub fn drain(&mut self) {
        self.changes.clear();
        self.lost = false;
        if let FeedState::Wanted(ring_bytes) = self.state {
            match TcpTracker::load_with(BPF_OBJECT, ring_bytes) {
                Ok(tracker) => {
                    debug!("following TCP state changes with eBPF");
                    self.state = FeedState::Running(Box::new(tracker));
                    // Namespaces dumped before now were not followed: dump them.
                    self.lost = true;
                }
                Err(e) => {
                    warn!(
                        error = %e,
                        "cannot follow TCP state changes with eBPF; every namespace's \
                         sockets are dumped whenever its TCP counters move"
                    );
                    crate::health::problem(
                        "eBPF",
                        format!(
                            "cannot follow TCP state changes ({e}); sockets are dumped \
                             instead, which costs the probe more CPU on busy hosts"
                        ),
                    );
                    self.state = FeedState::Off;
                }
            }
            return;
        }
        let FeedState::Running(tracker) = &mut self.state else {
            return;
        };
        match tracker.drain(&mut self.changes) {
            Ok(drained) => {
                // A change whose namespace could not be read belongs to no namespace.
                if drained.lost || self.changes.iter().any(|c| c.netns == 0) {
                    self.lost = true;
                    self.stats.losses += 1;
                }
                self.changes.sort_by_key(|c| c.netns);
            }
            Err(e) => {
                warn!(
                    error = %e,
                    "reading TCP state changes failed; following them is turned off"
                );
                crate::health::problem(
                    "eBPF",
                    format!(
                        "reading TCP state changes failed ({e}); sockets are dumped \
                         instead, which costs the probe more CPU on busy hosts"
                    ),
                );
                self.state = FeedState::Off;
                self.changes.clear();
            }
        }
    }

    /// This tick's changes in namespace `netns`; `None` when they are not known
    /// (tracker not running, or changes were lost): then dump.
    pub fn changes(&self, netns: u64) -> Option<&[StateChange]> {
        if !self.is_running() || self.lost {
            return None;
        }
        let start = self.changes.partition_point(|c| c.netns < netns);
        let end = self.changes.partition_point(|c| c.netns <= netns);
        Some(&self.changes[start..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

    fn sock(lport: u16, rport: u16, state: TcpState, inode: u64) -> TcpSocket {
        TcpSocket {
            local_ip: LO,
            local_port: lport,
            remote_ip: if rport == 0 { ANY } else { LO },
            remote_port: rport,
            state,
            inode,
            uid: 0,
        }
    }

    fn change(skaddr: u64, old: TcpState, new: TcpState, lport: u16, rport: u16) -> StateChange {
        StateChange {
            skaddr,
            netns: 1,
            old,
            new,
            socket: ExactSocket {
                family: netlink_packet_sock_diag::AF_INET,
                local_ip: LO,
                local_port: lport,
                remote_ip: if rport == 0 { ANY } else { LO },
                remote_port: rport,
                interface: 0,
            },
        }
    }

    /// A fake kernel: lookups answer from this list.
    fn kernel(live: &[TcpSocket]) -> impl FnMut(&ExactSocket) -> Result<Option<TcpSocket>, ()> {
        let live = live.to_vec();
        move |e| {
            Ok(live
                .iter()
                .find(|s| SocketKey::of(s) == SocketKey::of_exact(e))
                .copied())
        }
    }

    fn table(sockets: &[TcpSocket]) -> SocketTable {
        let mut t = SocketTable::default();
        t.replace_with_dump(true, |out| {
            out.extend_from_slice(sockets);
            Ok::<_, ()>(())
        })
        .expect("dump");
        t
    }

    fn sorted(t: &SocketTable) -> Vec<TcpSocket> {
        let mut v = t.sockets().to_vec();
        v.sort_by_key(|s| (s.local_port, s.remote_port));
        v
    }

    use TcpState::*;

    #[test]
    fn a_dump_keeps_the_places_of_sockets_the_table_had() {
        let (a, b, c, d) = (
            sock(80, 0, Listen, 1),
            sock(5000, 80, Established, 2),
            sock(80, 5000, Established, 3),
            sock(5001, 80, Established, 4),
        );
        let x = sock(5002, 80, Established, 5);
        let mut t = table(&[a, b, c, d]);
        t.replace_with_dump(true, |out| {
            out.extend_from_slice(&[d, x, b, a]);
            Ok::<_, ()>(())
        })
        .expect("dump");
        assert_eq!(t.sockets(), [a, b, d, x], "c's place goes to the last one");
        // The index follows: a change to d finds it where it now is.
        let update = t
            .apply(&[change(9, Established, Close, 5001, 80)], 1, kernel(&[]))
            .expect("applies");
        assert_eq!(update, Update::Updated { lookups: 0 });
        assert_eq!(t.sockets(), [a, b, x]);
    }

    #[test]
    fn opened_changed_and_closed_sockets_update_the_table() {
        let listener = sock(80, 0, Listen, 10);
        let old = sock(5000, 80, Established, 11);
        let mut t = table(&[listener, old, sock(80, 5000, Established, 12)]);
        let new_client = sock(6000, 80, Established, 20);
        let new_server = sock(80, 6000, Established, 21);
        let closing = sock(5000, 80, FinWait1, 11);
        let changes = [
            change(1, Close, SynSent, 0, 80),
            change(1, SynSent, Established, 6000, 80),
            change(2, SynRecv, Established, 80, 6000),
            change(3, Established, FinWait1, 5000, 80),
            change(4, Established, CloseWait, 80, 5000),
            change(4, CloseWait, LastAck, 80, 5000),
            change(4, LastAck, Close, 80, 5000),
        ];
        let update = t
            .apply(
                &changes,
                1,
                kernel(&[listener, new_client, new_server, closing]),
            )
            .expect("applies");
        assert_eq!(update, Update::Updated { lookups: 3 });
        assert_eq!(
            sorted(&t),
            vec![listener, new_server, closing, new_client],
            "the accepted end of the old connection is gone"
        );
        assert!(t.is_synced());
        assert_eq!(
            t.apply(&[], 2, kernel(&[])).expect("applies"),
            Update::Unchanged
        );
    }

    #[test]
    fn a_connection_answered_by_its_listener_is_gone() {
        let listener = sock(80, 0, Listen, 10);
        let mut t = table(&[listener, sock(80, 5000, Established, 12)]);
        let answer_listener = |_: &ExactSocket| Ok::<_, ()>(Some(listener));
        let update = t.apply(
            &[change(4, SynRecv, Established, 80, 5000)],
            1,
            answer_listener,
        );
        assert_eq!(update, Ok(Update::Updated { lookups: 1 }));
        assert_eq!(t.sockets(), &[listener]);
    }

    #[test]
    fn a_socket_closed_before_its_lookup_is_not_added() {
        let mut t = table(&[]);
        let changes = [change(1, SynSent, Established, 6000, 80)];
        assert_eq!(
            t.apply(&changes, 1, kernel(&[])).expect("applies"),
            Update::Updated { lookups: 1 }
        );
        assert!(t.sockets().is_empty());
    }

    #[test]
    fn a_listener_replaced_within_a_tick_is_asked_for_again() {
        let mut t = table(&[sock(80, 0, Listen, 10)]);
        let changes = [
            change(1, Listen, Close, 80, 0),
            change(2, Close, Listen, 80, 0),
        ];
        let update = t
            .apply(&changes, 1, kernel(&[sock(80, 0, Listen, 30)]))
            .expect("applies");
        assert_eq!(update, Update::Updated { lookups: 1 });
        assert_eq!(t.sockets(), &[sock(80, 0, Listen, 30)]);
    }

    #[test]
    fn what_changes_cannot_say_exactly_asks_for_a_dump() {
        // A second listener on the same address (SO_REUSEPORT).
        let mut t = table(&[sock(80, 0, Listen, 10)]);
        let update = t.apply(&[change(2, Close, Listen, 80, 0)], 1, kernel(&[]));
        assert!(matches!(update, Ok(Update::NeedsDump(_))), "{update:?}");
        assert!(!t.is_synced());

        // A change to one of two sockets the dump found with the same addresses.
        let mut t = table(&[sock(80, 0, Listen, 10), sock(80, 0, Listen, 11)]);
        let update = t.apply(&[change(2, Listen, Close, 80, 0)], 1, kernel(&[]));
        assert!(matches!(update, Ok(Update::NeedsDump(_))), "{update:?}");

        // A connecting socket whose port is still unknown a tick later.
        let mut t = table(&[]);
        let first = [change(7, Close, SynSent, 0, 80)];
        assert_eq!(t.apply(&first, 1, kernel(&[])), Ok(Update::Unchanged));
        let update = t.apply(&[], 2, kernel(&[]));
        assert!(matches!(update, Ok(Update::NeedsDump(_))), "{update:?}");

        // More changes than a dump costs.
        let mut t = table(&[]);
        let many: Vec<StateChange> = (1..=100)
            .map(|p| change(u64::from(p), SynSent, Established, 10000 + p, 80))
            .collect();
        let update = t.apply(&many, 1, kernel(&[]));
        assert!(matches!(update, Ok(Update::NeedsDump(_))), "{update:?}");

        // A failed lookup.
        let mut t = table(&[]);
        let failing = |_: &ExactSocket| Err::<Option<TcpSocket>, _>("boom");
        let update = t.apply(&[change(1, SynSent, Established, 6000, 80)], 1, failing);
        assert_eq!(update, Err("boom"));
        assert!(!t.is_synced());
    }

    #[test]
    fn a_socket_waiting_to_be_accepted_gets_its_inode_when_accepted() {
        let mut t = table(&[]);
        let waiting = sock(80, 6000, Established, 0);
        let changes = [change(2, SynRecv, Established, 80, 6000)];
        t.apply(&changes, 1, kernel(&[waiting])).expect("applies");
        assert_eq!(t.sockets(), &[waiting]);
        // No change, but it is asked for again until it has an inode.
        let accepted = sock(80, 6000, Established, 44);
        assert_eq!(
            t.apply(&[], 2, kernel(&[accepted])),
            Ok(Update::Updated { lookups: 1 })
        );
        assert_eq!(t.sockets(), &[accepted]);
        assert_eq!(t.apply(&[], 3, kernel(&[accepted])), Ok(Update::Unchanged));
    }

    #[test]
    fn removal_keeps_the_index_of_the_moved_socket() {
        let a = sock(1, 80, Established, 1);
        let b = sock(2, 80, Established, 2);
        let c = sock(3, 80, Established, 3);
        let mut t = table(&[a, b, c]);
        t.apply(&[change(1, Established, Close, 1, 80)], 1, kernel(&[]))
            .expect("applies");
        let c2 = sock(3, 80, CloseWait, 3);
        t.apply(
            &[change(3, Established, CloseWait, 3, 80)],
            2,
            kernel(&[c2]),
        )
        .expect("applies");
        assert_eq!(sorted(&t), vec![b, c2]);
    }

    #[test]
    fn tracked_states_are_those_a_dump_asks_for() {
        for s in [
            Established,
            SynSent,
            SynRecv,
            FinWait1,
            FinWait2,
            CloseWait,
            LastAck,
            Closing,
            Listen,
        ] {
            assert!(is_tracked(s), "{s:?}");
        }
        for s in [Close, TimeWait, NewSynRecv, Other(0), Other(40)] {
            assert!(!is_tracked(s), "{s:?}");
        }
    }
}
