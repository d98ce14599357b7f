//! Synthetic reports: deterministic, realistic host reports for benchmarks, tests and
//! fleet load simulation.
//!
//! A [`HostShape`] says how big a host is (processes, connection end points, containers,
//! CPUs, memory, which peers it talks to). A [`HostSimulator`] builds that host's state
//! from a seed and moves it forward one publish interval at a time, so consecutive
//! reports differ the way a real probe's do: every metric gets new samples, a few
//! processes exit and others start, some connections close and new ones open, a few
//! values change. [`host_report`] is the one-shot form and [`fleet_reports`] builds a
//! whole fleet.
//!
//! The reports are shaped like the ones a Scope probe publishes (compare
//! `testdata/scope/published/load-full.msgpack.gz`): the host node with its metadata,
//! metrics, local networks and the `host_exec` control; processes with `pid`, `ppid`,
//! `name`, `cmdline` and `threads` and three metric series; connection end points that
//! carry the owning `pid` and an edge to the peer end point; Docker containers with
//! their `docker_*` metadata, an image, and the presentation templates and controls a
//! probe sends. Every ID is built with [`crate::id`].
//!
//! Everything is derived from the caller's seed with a small splitmix64 generator and
//! only ordered collections are iterated, so the same shape, seed and start time give
//! the same reports on every machine and every run.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use crate::id;
use crate::node::{ACTIVE_CONTROLS, CONTROL_PROBE_ID, HOST_NODE_ID, LatestEntry, Metric, Node};
use crate::node::{Latest, Sample};
use crate::report::{DnsRecord, Report};
use crate::sorted::{SortedMap, StringSet};
use crate::str::{InternScope, Str};
use crate::time::GoTime;
use crate::topology::{
    Column, Control, MULTICOLUMN_TABLE, MetadataTemplate, MetricTemplate, PROPERTY_LIST,
    TableTemplate, Topology, TopologyKind,
};

/// The probe's spy interval: one metric sample per tick.
pub const TICK_NANOS: i64 = 1_000_000_000;

const GIB: u64 = 1 << 30;

/// How big a synthetic host is and who it talks to.
#[derive(Debug, Clone, PartialEq)]
pub struct HostShape {
    /// The host ID (`<hostname>;<host>` is its node ID).
    pub hostname: String,
    /// The host's main address; outbound and inbound connections use it.
    pub address: Ipv4Addr,
    /// Process nodes (exactly).
    pub processes: usize,
    /// Endpoint nodes (exactly). Each connection contributes its two ends; a server
    /// end is shared by the connections to it, so a host has slightly more than
    /// `endpoints / 2` connections.
    pub endpoints: usize,
    /// Container nodes (exactly).
    pub containers: usize,
    /// Container image nodes (at most one per container, and at most five). Image IDs
    /// depend only on the image, so a fleet's hosts share them.
    pub images: usize,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Samples per metric in a full report: one per spy tick of the publish interval.
    pub samples: usize,
    /// Addresses of other hosts this one has connections with.
    pub peers: Vec<Ipv4Addr>,
    /// Fraction of short-lived processes replaced per publish interval.
    pub process_churn: f64,
    /// Fraction of connections closed (and replaced by new ones) per publish interval.
    pub connection_churn: f64,
}

impl HostShape {
    /// A heavily loaded host: 5,000 processes, 20,000 end points, 50 containers.
    pub fn busy_host() -> Self {
        HostShape {
            hostname: "busy-1".to_string(),
            address: Ipv4Addr::new(10, 16, 0, 10),
            processes: 5_000,
            endpoints: 20_000,
            containers: 50,
            images: 1,
            cpus: 32,
            memory_bytes: 128 * GIB,
            samples: 3,
            peers: (1..=24).map(|i| Ipv4Addr::new(10, 16, 0, 10 + i)).collect(),
            process_churn: 0.005,
            connection_churn: 0.02,
        }
    }

    /// Host number `index` of a fleet: 500 processes, 2,000 end points, 8 to 12
    /// containers, with connections to its neighbours in the fleet.
    pub fn fleet_member(index: usize) -> Self {
        let peers = index.saturating_sub(8)..=index + 8;
        HostShape {
            hostname: format!("node-{index:03}"),
            address: fleet_address(index),
            processes: 500,
            endpoints: 2_000,
            containers: 8 + index % 5,
            images: 1,
            cpus: 8,
            memory_bytes: 32 * GIB,
            samples: 3,
            peers: peers.filter(|&j| j != index).map(fleet_address).collect(),
            process_churn: 0.01,
            connection_churn: 0.05,
        }
    }

    /// A small, fast-changing fleet member for tests: 40 processes, 120 end points,
    /// 2 to 4 containers, a fifth of its connections and a tenth of its processes
    /// replaced at each step.
    pub fn small_member(index: usize) -> Self {
        HostShape {
            processes: 40,
            endpoints: 120,
            containers: 2 + index % 3,
            connection_churn: 0.2,
            process_churn: 0.1,
            ..HostShape::fleet_member(index)
        }
    }
}

/// The address of fleet member `index`: 10.32.0.2 and up, 250 hosts per /24
/// (unique for the first 14 million members).
pub fn fleet_address(index: usize) -> Ipv4Addr {
    let [_, _, hi, lo] = ((index / 250) as u32).to_be_bytes();
    Ipv4Addr::new(10, hi.wrapping_add(32), lo, (index % 250) as u8 + 2)
}

/// The seed of fleet member `index` in a fleet seeded with `seed`.
pub fn fleet_seed(seed: u64, index: usize) -> u64 {
    Rng::new(seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407)).next_u64()
}

/// One full report of a host, its last spy tick at `now`.
pub fn host_report(shape: &HostShape, seed: u64, now: GoTime) -> Report {
    HostSimulator::new(shape.clone(), seed, now).report()
}

/// One full report from each of `hosts` fleet members ([`HostShape::fleet_member`]).
pub fn fleet_reports(hosts: usize, seed: u64, now: GoTime) -> Vec<Report> {
    (0..hosts)
        .map(|i| host_report(&HostShape::fleet_member(i), fleet_seed(seed, i), now))
        .collect()
}

/// splitmix64: tiny, fast and good enough for synthetic data.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An element of a non-empty constant table.
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    fn hex(&mut self, len: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        (0..len)
            .map(|_| char::from(DIGITS[self.index(16)]))
            .collect()
    }
}

/// How a metric moves from one sample to the next.
#[derive(Debug, Clone, Copy)]
enum Walk {
    /// A percentage bounded by `cap`.
    Percent(f64),
    /// A process's CPU percentage, bounded by `cap`: whole jiffies per second, so
    /// integral, and an idle process stays at zero most of the time.
    ProcessCpu(f64),
    /// A byte count that sometimes grows or shrinks by a few pages.
    Bytes,
    /// A small integer that now and then moves by one.
    Count,
    /// A load average (two decimals).
    Load,
}

impl Walk {
    fn next(self, rng: &mut Rng, prev: f64) -> f64 {
        match self {
            // Busy processes swing more than idle ones.
            Walk::Percent(cap) => (prev + (rng.unit() - 0.5) * (0.3 * prev + 0.5)).clamp(0.0, cap),
            Walk::ProcessCpu(_) if prev < 0.5 => {
                if rng.chance(0.05) {
                    1.0
                } else {
                    0.0
                }
            }
            Walk::ProcessCpu(cap) => {
                let swing = (rng.unit() - 0.5) * (0.3 * prev + 2.0);
                (prev + swing).round().clamp(0.0, cap)
            }
            Walk::Bytes if prev > 0.0 && rng.chance(0.2) => {
                let pages = rng.below(64) as f64 - 31.0;
                (prev + pages * 4096.0).max(4096.0)
            }
            Walk::Bytes => prev,
            Walk::Count => match rng.below(40) {
                0 => (prev - 1.0).max(0.0),
                1 => prev + 1.0,
                _ => prev,
            },
            Walk::Load => ((prev + (rng.unit() - 0.5) * 0.3).max(0.0) * 100.0).round() / 100.0,
        }
    }
}

/// The last `samples` values of one metric.
#[derive(Debug, Clone)]
struct Series {
    walk: Walk,
    values: Vec<f64>,
}

impl Series {
    /// A series around `level`.
    fn start(rng: &mut Rng, walk: Walk, level: f64, samples: usize) -> Self {
        let mut s = Series {
            walk,
            values: vec![walk.next(rng, level)],
        };
        while s.values.len() < samples {
            let last = s.values[s.values.len() - 1];
            s.values.push(walk.next(rng, last));
        }
        s
    }

    /// Replaces every sample with the next ones (a new publish interval).
    fn advance(&mut self, rng: &mut Rng) {
        for i in 0..self.values.len() {
            let prev = if i == 0 {
                self.values[self.values.len() - 1]
            } else {
                self.values[i - 1]
            };
            self.values[i] = self.walk.next(rng, prev);
        }
    }

    fn metric(&self, ticks: &[GoTime], capacity: Option<f64>) -> Metric {
        let samples = ticks
            .iter()
            .zip(&self.values)
            .map(|(&date, &value)| Sample { date, value })
            .collect();
        let min = self.values.iter().copied().fold(f64::INFINITY, f64::min);
        let top = self
            .values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        Metric {
            samples,
            min,
            max: capacity.map_or(top, |c| c.max(top)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Init,
    Kernel,
    Daemon,
    /// The runtime shim of a container (outside it).
    Shim,
    /// Inside container number `n`.
    Contained(usize),
    /// A short-lived process, replaced by churn.
    Worker,
}

#[derive(Debug, Clone)]
struct Process {
    pid: u32,
    ppid: u32,
    name: Str,
    cmdline: Option<Str>,
    threads: u32,
    role: Role,
    cpu: Series,
    memory: Series,
    open_files: Series,
}

#[derive(Debug, Clone)]
struct Image {
    id: Str,
    name: &'static str,
    tag: &'static str,
    size: &'static str,
}

#[derive(Debug, Clone)]
struct Container {
    id: Str,
    name: Str,
    image: usize,
    address: Ipv4Addr,
    port: u16,
    created: GoTime,
    restart_count: u32,
    cpu: Series,
    memory: Series,
}

/// Which addresses a connection joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// A local process to a local listener on 127.0.0.1 (ends scoped by the host).
    Loopback,
    /// A local process to a remote server (ends with an empty scope).
    Outbound,
    /// A remote client to a listener on the host's address.
    Inbound,
    /// One container to another over the Docker bridge (ends scoped by the host).
    Bridge,
}

/// A local listening socket: its end point ID and owning process.
#[derive(Debug, Clone)]
struct Listener {
    end: Str,
    pid: u32,
}

/// One end point node: who owns it, and the server it connects to (client ends).
#[derive(Debug, Clone)]
struct End {
    pid: Option<u32>,
    peer: Option<Str>,
    /// Connections using this end; a listening socket without connections is pinned.
    refs: u32,
    pinned: bool,
}

#[derive(Debug, Clone)]
struct Connection {
    route: Route,
    client: Str,
    client_pid: Option<u32>,
    server: Str,
}

/// Ports of services on other hosts.
const PEER_PORTS: [u16; 6] = [443, 8080, 9100, 5432, 6379, 22];
const BRIDGE_SUBNET: &str = "172.17.0.0/16";

/// Where a daemon listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bind {
    Loopback,
    /// The host's main address.
    Host,
}

/// The sockets a daemon listens on.
type Sockets = &'static [(Bind, u16)];

/// Long-running daemons: name, command line, sockets.
#[rustfmt::skip]
const DAEMONS: &[(&str, &str, Sockets)] = &[
    ("systemd-journald", "/lib/systemd/systemd-journald", &[]),
    ("sshd", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", &[(Bind::Host, 22)]),
    ("containerd", "/usr/bin/containerd --config /etc/containerd/config.toml", &[]),
    ("dockerd", "/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock", &[]),
    ("nginx", "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;", &[(Bind::Host, 80), (Bind::Host, 443)]),
    ("postgres", "/usr/lib/postgresql/16/bin/postgres -D /var/lib/postgresql/16/main -c config_file=/etc/postgresql/16/main/postgresql.conf", &[(Bind::Loopback, 5432)]),
    ("redis-server", "/usr/bin/redis-server 127.0.0.1:6379", &[(Bind::Loopback, 6379)]),
    ("java", "/usr/bin/java -Xms512m -Xmx4g -XX:+UseG1GC -Dspring.profiles.active=prod -jar /opt/orders/orders-service.jar --server.port=8080", &[(Bind::Host, 8080)]),
    ("node_exporter", "/usr/local/bin/node_exporter --web.listen-address=:9100 --collector.systemd", &[(Bind::Host, 9100)]),
    ("envoy", "/usr/local/bin/envoy -c /etc/envoy/envoy.yaml --service-cluster edge --log-level warn", &[(Bind::Loopback, 15000), (Bind::Host, 15001)]),
    ("rescope", "/usr/local/bin/rescope probe --publish-interval=3s app.internal:4040", &[]),
    ("cron", "/usr/sbin/cron -f", &[]),
    ("rsyslogd", "/usr/sbin/rsyslogd -n -iNONE", &[]),
    ("chronyd", "/usr/sbin/chronyd -F 1", &[]),
];
/// Where containerd sits in [`DAEMONS`] (container shims are its children).
const CONTAINERD: usize = 2;

/// Short-lived processes: name and command line (`{n}` becomes a number; an empty
/// command line means a batch job with a long class path, see `java_cmdline`).
#[rustfmt::skip]
const WORKERS: &[(&str, &str)] = &[
    ("python3", "/usr/bin/python3 /srv/jobs/worker.py --queue=q{n} --concurrency=4"),
    ("node", "node /srv/web/dist/server.js --worker={n}"),
    ("gunicorn", "/srv/venv/bin/python /srv/venv/bin/gunicorn app.wsgi:application --workers 8 --bind 127.0.0.1:{n}"),
    ("bash", "-bash"),
    ("sleep", "sleep {n}"),
    ("celery", "/srv/venv/bin/python -m celery -A tasks worker --loglevel=INFO -n worker{n}@%h"),
    ("php-fpm", "php-fpm: pool www"),
    ("postgres", "postgres: app orders [local] idle"),
    ("ruby", "puma: cluster worker {n}: 1 [shop]"),
    ("java", ""),
];

/// Container images: name, tag, size, main command, listening port.
#[rustfmt::skip]
const IMAGES: &[(&str, &str, &str, &str, u16)] = &[
    ("registry.example.com/shop/api", "2.14.1", "342 MB", "/app/api --listen :8080", 8080),
    ("nginx", "1.27", "187 MB", "nginx -g 'daemon off;'", 80),
    ("redis", "7.2", "117 MB", "redis-server --appendonly yes", 6379),
    ("postgres", "16", "432 MB", "postgres", 5432),
    ("registry.example.com/shop/worker", "2.14.1", "298 MB", "/app/worker --queue orders", 9000),
];

const CONTAINER_CONTROLS: &str = "docker_restart_container;docker_stop_container;docker_pause_container;docker_attach_container;docker_exec_container";

/// Libraries on the class path of the batch-job workers.
#[rustfmt::skip]
const JARS: &[&str] = &[
    "spring-core", "spring-beans", "spring-context", "spring-jdbc", "jackson-core",
    "jackson-databind", "netty-all", "guava", "slf4j-api", "logback-classic", "hikaricp",
    "postgresql", "micrometer-core", "kafka-clients", "snappy-java",
];

fn java_cmdline(n: u64) -> String {
    let cp: Vec<String> = JARS
        .iter()
        .map(|j| format!("/opt/batch/lib/{j}-{}.jar", 1 + n % 7))
        .collect();
    format!(
        "/usr/bin/java -Xmx1g -cp {} com.example.batch.Main --shard={n}",
        cp.join(":")
    )
}

fn ip_text(ip: Ipv4Addr) -> String {
    id::canonical_ip(IpAddr::V4(ip))
}

/// "Up 5 minutes", as Docker says it.
fn up_for(secs: i64) -> String {
    match secs {
        ..60 => "Up Less than a minute".to_string(),
        60..3600 => format!("Up {} minutes", secs / 60),
        3600..172_800 => format!("Up {} hours", secs / 3600),
        _ => format!("Up {} days", secs / 86_400),
    }
}

fn entry(key: &str, timestamp: GoTime, value: impl Into<Str>) -> (Str, LatestEntry) {
    (
        Str::new(key),
        LatestEntry {
            timestamp,
            value: value.into(),
        },
    )
}

fn latest(entries: Vec<(Str, LatestEntry)>) -> Latest {
    SortedMap::from_unsorted(entries)
}

/// A host's state between reports, moved forward by [`HostSimulator::advance`].
#[derive(Debug, Clone)]
pub struct HostSimulator {
    shape: HostShape,
    rng: Rng,
    /// The spy ticks of the current publish interval, oldest first.
    ticks: Vec<GoTime>,
    boot: GoTime,
    probe_id: Str,
    report_id: u64,
    host_cpu: Series,
    host_memory: Series,
    load1: Series,
    processes: Vec<Process>,
    next_pid: u32,
    /// Indices of processes that open client connections (daemons and workers).
    client_procs: Vec<usize>,
    /// Indices of worker processes (the ones churn replaces).
    worker_procs: Vec<usize>,
    containers: Vec<Container>,
    /// Process indices per container.
    container_procs: Vec<Vec<usize>>,
    /// Containers with processes (which can open bridge connections).
    bridge_clients: Vec<usize>,
    images: Vec<Image>,
    loopback_listeners: Vec<Listener>,
    host_listeners: Vec<Listener>,
    bridge_listeners: Vec<Listener>,
    connections: Vec<Connection>,
    ends: BTreeMap<Str, End>,
    /// Internet servers connected to so far (they get DNS names).
    internet: BTreeSet<u8>,
}

impl HostSimulator {
    /// Builds the host's state; its first report's last spy tick is `now`.
    pub fn new(mut shape: HostShape, seed: u64, now: GoTime) -> Self {
        shape.samples = shape.samples.max(1);
        let mut rng = Rng::new(seed);
        let samples = shape.samples;
        let mem = shape.memory_bytes as f64;
        let boot = now.add_nanos(-(3_600 + rng.below(30 * 86_400) as i64) * TICK_NANOS);
        let mut sim = HostSimulator {
            ticks: Vec::new(),
            boot,
            probe_id: Str::from(rng.hex(16)),
            report_id: rng.next_u64() >> 1,
            host_cpu: Series::start(&mut rng, Walk::Percent(100.0), 20.0, samples),
            host_memory: Series::start(&mut rng, Walk::Bytes, (mem * 0.1).round(), samples),
            load1: Series::start(&mut rng, Walk::Load, f64::from(shape.cpus) * 0.3, samples),
            processes: Vec::with_capacity(shape.processes),
            next_pid: 2,
            client_procs: Vec::new(),
            worker_procs: Vec::new(),
            containers: Vec::new(),
            container_procs: Vec::new(),
            bridge_clients: Vec::new(),
            images: Vec::new(),
            loopback_listeners: Vec::new(),
            host_listeners: Vec::new(),
            bridge_listeners: Vec::new(),
            connections: Vec::new(),
            ends: BTreeMap::new(),
            internet: BTreeSet::new(),
            rng,
            shape,
        };
        sim.ticks = sim.ticks_ending(now);
        sim.build_processes();
        sim.fill_endpoints();
        sim
    }

    pub fn shape(&self) -> &HostShape {
        &self.shape
    }

    /// The last spy tick of the current publish interval.
    pub fn now(&self) -> GoTime {
        self.ticks[self.ticks.len() - 1]
    }

    fn ticks_ending(&mut self, now: GoTime) -> Vec<GoTime> {
        let n = self.shape.samples as i64;
        (0..n)
            .map(|k| {
                let jitter = if k == n - 1 {
                    0
                } else {
                    self.rng.below(20_000_000) as i64
                };
                now.add_nanos(-(n - 1 - k) * TICK_NANOS - jitter)
            })
            .collect()
    }

    fn alloc_pid(&mut self) -> u32 {
        self.next_pid += 1 + self.rng.below(6) as u32;
        self.next_pid
    }

    /// Adds a process unless the shape's budget is used up; returns its index.
    fn spawn(
        &mut self,
        pid: u32,
        ppid: u32,
        name: &str,
        cmdline: &str,
        role: Role,
    ) -> Option<usize> {
        if self.processes.len() >= self.shape.processes {
            return None;
        }
        let samples = self.shape.samples;
        let rng = &mut self.rng;
        let cpu_cap = 100.0 * f64::from(self.shape.cpus);
        // Most processes are idle; a few are busy.
        let busy = match role {
            Role::Kernel | Role::Init | Role::Shim => 0.0,
            _ if rng.chance(0.75) => 0.0,
            _ => (rng.unit().powi(2) * 100.0).round(),
        };
        let memory = match role {
            Role::Kernel => 0.0,
            _ => ((2.0 + rng.unit() * 9.0).exp2() * 1024.0 * 1024.0 / 4096.0).round() * 4096.0,
        };
        let files = match role {
            Role::Kernel => 0.0,
            _ => (3 + rng.below(200)) as f64,
        };
        let process = Process {
            pid,
            ppid,
            name: Str::new(name),
            cmdline: (!cmdline.is_empty()).then(|| Str::new(cmdline)),
            threads: if role == Role::Kernel {
                1
            } else {
                1 + rng.below(40) as u32
            },
            role,
            cpu: Series::start(rng, Walk::ProcessCpu(cpu_cap), busy, samples),
            memory: Series::start(rng, Walk::Bytes, memory, samples),
            open_files: Series::start(rng, Walk::Count, files, samples),
        };
        let index = self.processes.len();
        self.processes.push(process);
        match role {
            Role::Daemon => self.client_procs.push(index),
            Role::Worker => {
                self.client_procs.push(index);
                self.worker_procs.push(index);
            }
            _ => {}
        }
        Some(index)
    }

    fn worker(&mut self) -> (String, String) {
        let n = 1 + self.rng.below(9_000);
        let (name, template) = self.rng.pick(WORKERS);
        let cmdline = if template.is_empty() {
            java_cmdline(n)
        } else {
            template.replace("{n}", &n.to_string())
        };
        (name.to_string(), cmdline)
    }

    fn build_processes(&mut self) {
        let shape = self.shape.clone();
        if self
            .spawn(1, 0, "systemd", "/sbin/init splash", Role::Init)
            .is_none()
        {
            return self.build_containers(&[]);
        }
        let _ = self.spawn(2, 0, "kthreadd", "", Role::Kernel);
        let kernel = shape.processes / 10;
        for k in 0..kernel {
            let cpu = k as u32 % shape.cpus.max(1);
            let name = match k % 5 {
                0 => format!("ksoftirqd/{cpu}"),
                1 => format!("migration/{cpu}"),
                2 => format!("kworker/{cpu}:{}", k / 5),
                3 => format!("kworker/u{}:{}", shape.cpus * 2, k / 5),
                _ => format!("cpuhp/{cpu}"),
            };
            let pid = self.alloc_pid();
            let _ = self.spawn(pid, 2, &name, "", Role::Kernel);
        }
        let mut daemon_pids = vec![1];
        for (name, cmdline, sockets) in DAEMONS {
            let pid = self.alloc_pid();
            if self.spawn(pid, 1, name, cmdline, Role::Daemon).is_none() {
                break;
            }
            daemon_pids.push(pid);
            for &(bind, port) in *sockets {
                let ip = match bind {
                    Bind::Loopback => Ipv4Addr::LOCALHOST,
                    Bind::Host => shape.address,
                };
                let end = self.end_id(ip, port, false);
                let listeners = match bind {
                    Bind::Loopback => &mut self.loopback_listeners,
                    Bind::Host => &mut self.host_listeners,
                };
                listeners.push(Listener { end, pid });
            }
        }
        self.build_containers(&daemon_pids);
        while self.processes.len() < shape.processes {
            let pid = self.alloc_pid();
            let parent = if self.worker_procs.is_empty() || self.rng.chance(0.5) {
                daemon_pids[self.rng.index(daemon_pids.len())]
            } else {
                let i = self.worker_procs[self.rng.index(self.worker_procs.len())];
                self.processes[i].pid
            };
            let (name, cmdline) = self.worker();
            let _ = self.spawn(pid, parent, &name, &cmdline, Role::Worker);
        }
    }

    fn build_containers(&mut self, daemon_pids: &[u32]) {
        let shape = self.shape.clone();
        let image_count = shape.images.min(shape.containers).min(IMAGES.len());
        for (i, &(name, tag, size, _, _)) in IMAGES.iter().enumerate().take(image_count) {
            // Image IDs depend only on the image, so every host of a fleet agrees.
            let mut image_rng = Rng::new(0x1A6E_5EED ^ i as u64);
            self.images.push(Image {
                id: Str::from(image_rng.hex(64)),
                name,
                tag,
                size,
            });
        }
        let containerd = daemon_pids.get(CONTAINERD + 1).copied().unwrap_or(1);
        let now = self.now();
        let samples = shape.samples;
        for c in 0..shape.containers {
            let image = if image_count == 0 { 0 } else { c % image_count };
            let (base, _, _, command, port) = IMAGES[image % IMAGES.len()];
            let service = base.rsplit('/').next().unwrap_or(base);
            let seq = u32::try_from(c).unwrap_or(u32::MAX);
            let [_, _, hi, lo] = (seq + 2).to_be_bytes();
            let cid = self.rng.hex(64);
            let age = 300 + self.rng.below(20 * 86_400) as i64;
            let container = Container {
                name: Str::from(format!("{service}-{}", c + 1)),
                image,
                address: Ipv4Addr::new(172, 17, hi, lo),
                port,
                created: now
                    .add_nanos(-age * TICK_NANOS - self.rng.below(TICK_NANOS as u64) as i64),
                restart_count: 0,
                cpu: Series::start(&mut self.rng, Walk::Percent(100.0), 2.0, samples),
                memory: Series::start(&mut self.rng, Walk::Bytes, 64.0 * 1024.0 * 1024.0, samples),
                id: Str::from(cid),
            };
            let shim_cmd = format!(
                "/usr/bin/containerd-shim-runc-v2 -namespace moby -id {} -address /run/containerd/containerd.sock",
                container.id
            );
            let mut procs = Vec::new();
            let shim_pid = self.alloc_pid();
            if self
                .spawn(
                    shim_pid,
                    containerd,
                    "containerd-shim",
                    &shim_cmd,
                    Role::Shim,
                )
                .is_some()
            {
                let main_pid = self.alloc_pid();
                let main_name = command.split(' ').next().unwrap_or(command);
                let main_name = main_name.rsplit('/').next().unwrap_or(main_name);
                if let Some(main) =
                    self.spawn(main_pid, shim_pid, main_name, command, Role::Contained(c))
                {
                    procs.push(main);
                    let scope = id::address_scope(
                        &shape.hostname,
                        IpAddr::V4(container.address),
                        true,
                        None,
                    );
                    self.bridge_listeners.push(Listener {
                        end: Str::from(id::endpoint_id(&scope, &ip_text(container.address), port)),
                        pid: main_pid,
                    });
                    for _ in 0..self.rng.below(4) {
                        let pid = self.alloc_pid();
                        if let Some(child) =
                            self.spawn(pid, main_pid, main_name, command, Role::Contained(c))
                        {
                            procs.push(child);
                        }
                    }
                }
            }
            if !procs.is_empty() {
                self.bridge_clients.push(c);
            }
            self.containers.push(container);
            self.container_procs.push(procs);
        }
    }

    fn client_process(&mut self) -> Option<u32> {
        if self.client_procs.is_empty() {
            return None;
        }
        let i = self.client_procs[self.rng.index(self.client_procs.len())];
        Some(self.processes[i].pid)
    }

    fn end_id(&self, ip: Ipv4Addr, port: u16, bridge: bool) -> Str {
        let scope = id::address_scope(&self.shape.hostname, IpAddr::V4(ip), bridge, None);
        Str::from(id::endpoint_id(&scope, &ip_text(ip), port))
    }

    fn ephemeral(&mut self) -> u16 {
        32_768 + self.rng.below(28_232) as u16
    }

    /// A fresh client end for `route`: (ID, owning pid).
    fn client_end(&mut self, route: Route) -> (Str, Option<u32>) {
        let port = self.ephemeral();
        match route {
            Route::Loopback => {
                let pid = self.client_process();
                (self.end_id(Ipv4Addr::LOCALHOST, port, false), pid)
            }
            Route::Outbound => {
                let pid = self.client_process();
                (self.end_id(self.shape.address, port, false), pid)
            }
            Route::Inbound => {
                let ip = if !self.shape.peers.is_empty() && self.rng.chance(0.5) {
                    self.shape.peers[self.rng.index(self.shape.peers.len())]
                } else {
                    // 100.64.0.0/10: clients behind carrier-grade NAT.
                    Ipv4Addr::from(0x6440_0000 | self.rng.below(1 << 22) as u32)
                };
                (self.end_id(ip, port, false), None)
            }
            Route::Bridge => {
                // Bridge routes exist only when some container has processes.
                let c = self.bridge_clients[self.rng.index(self.bridge_clients.len())];
                let procs = &self.container_procs[c];
                let pid = self.processes[procs[self.rng.index(procs.len())]].pid;
                (
                    self.end_id(self.containers[c].address, port, true),
                    Some(pid),
                )
            }
        }
    }

    /// A server end for `route`: (ID, owning pid, when local).
    fn server_end(&mut self, route: Route) -> (Str, Option<u32>) {
        let pick = |rng: &mut Rng, list: &[Listener]| {
            let l = &list[rng.index(list.len())];
            (l.end.clone(), Some(l.pid))
        };
        match route {
            Route::Loopback => pick(&mut self.rng, &self.loopback_listeners),
            Route::Bridge => pick(&mut self.rng, &self.bridge_listeners),
            Route::Inbound if !self.host_listeners.is_empty() => {
                pick(&mut self.rng, &self.host_listeners)
            }
            Route::Inbound => (self.end_id(self.shape.address, 22, false), None),
            Route::Outbound => {
                if !self.shape.peers.is_empty() && self.rng.chance(0.6) {
                    let peer = self.shape.peers[self.rng.index(self.shape.peers.len())];
                    let port = self.rng.pick(&PEER_PORTS);
                    (self.end_id(peer, port, false), None)
                } else {
                    let k = 1 + self.rng.below(64) as u8;
                    self.internet.insert(k);
                    let port = if self.rng.chance(0.9) { 443 } else { 80 };
                    (
                        self.end_id(Ipv4Addr::new(203, 0, 113, k), port, false),
                        None,
                    )
                }
            }
        }
    }

    fn pick_route(&mut self) -> Route {
        let roll = self.rng.below(100);
        let bridge_ok = !self.bridge_listeners.is_empty();
        match roll {
            0..20 if !self.loopback_listeners.is_empty() => Route::Loopback,
            20..30 if bridge_ok => Route::Bridge,
            30..60 => Route::Inbound,
            _ => Route::Outbound,
        }
    }

    /// Opens a connection on `route` to `server`; the client end is always new.
    fn connect(&mut self, mut route: Route, mut server: (Str, Option<u32>)) {
        let mut attempts = 0;
        let (client, client_pid) = loop {
            let candidate = self.client_end(route);
            if !self.ends.contains_key(&candidate.0) {
                break candidate;
            }
            attempts += 1;
            if attempts == 16 {
                // The local ephemeral ports are crowded: let a remote client (from
                // millions of addresses) connect in instead.
                route = Route::Inbound;
                server = self.server_end(route);
            }
        };
        let (server, server_pid) = server;
        self.ends
            .entry(server.clone())
            .or_insert(End {
                pid: server_pid,
                peer: None,
                refs: 0,
                pinned: false,
            })
            .refs += 1;
        self.ends.insert(
            client.clone(),
            End {
                pid: client_pid,
                peer: Some(server.clone()),
                refs: 1,
                pinned: false,
            },
        );
        self.connections.push(Connection {
            route,
            client,
            client_pid,
            server,
        });
    }

    /// Opens and pins connections until there are exactly `shape.endpoints` ends.
    fn fill_endpoints(&mut self) {
        while self.ends.len() < self.shape.endpoints {
            if self.shape.endpoints - self.ends.len() >= 2 {
                let route = self.pick_route();
                let server = self.server_end(route);
                self.connect(route, server);
            } else if !self.connections.is_empty() {
                // One end left: another client of an existing server.
                let c = &self.connections[self.rng.index(self.connections.len())];
                let (route, server) = (c.route, c.server.clone());
                let pid = self.ends.get(&server).and_then(|e| e.pid);
                self.connect(route, (server, pid));
            } else {
                // One end left and nothing connected: a socket init listens on.
                let pid = self.processes.first().map(|p| p.pid);
                let mut port = 1024;
                let end = loop {
                    let end = self.end_id(self.shape.address, port, false);
                    if !self.ends.contains_key(&end) {
                        break end;
                    }
                    port += 1;
                };
                self.ends.insert(
                    end,
                    End {
                        pid,
                        peer: None,
                        refs: 0,
                        pinned: true,
                    },
                );
            }
        }
    }

    fn close(&mut self, c: Connection) {
        self.ends.remove(&c.client);
        if let Some(server) = self.ends.get_mut(&c.server) {
            server.refs = server.refs.saturating_sub(1);
            if server.refs == 0 && !server.pinned {
                self.ends.remove(&c.server);
            }
        }
    }

    /// Moves one publish interval on: new samples for every metric, some workers
    /// replaced, some connections replaced, a few values changed.
    pub fn advance(&mut self) {
        let interval = TICK_NANOS * self.shape.samples as i64;
        let now = self
            .now()
            .add_nanos(interval + self.rng.below(5_000_000) as i64);
        self.ticks = self.ticks_ending(now);
        self.report_id = self.rng.next_u64() >> 1;
        let rng = &mut self.rng;
        for s in [&mut self.host_cpu, &mut self.host_memory, &mut self.load1] {
            s.advance(rng);
        }
        for p in &mut self.processes {
            p.cpu.advance(rng);
            p.memory.advance(rng);
            p.open_files.advance(rng);
            if p.role != Role::Kernel && rng.chance(0.03) {
                p.threads = if rng.chance(0.5) {
                    p.threads + 1
                } else {
                    p.threads.max(2) - 1
                };
            }
        }
        for c in &mut self.containers {
            c.cpu.advance(rng);
            c.memory.advance(rng);
        }
        if !self.containers.is_empty() && rng.chance(0.2) {
            let c = rng.index(self.containers.len());
            self.containers[c].restart_count += 1;
        }
        self.churn_processes();
        let closing =
            (self.connections.len() as f64 * self.shape.connection_churn).round() as usize;
        for _ in 0..closing.min(self.connections.len()) {
            let i = self.rng.index(self.connections.len());
            let c = self.connections.swap_remove(i);
            self.close(c);
        }
        self.fill_endpoints();
    }

    /// Replaces some workers with new processes; their connections close and their
    /// children are adopted by init.
    fn churn_processes(&mut self) {
        if self.worker_procs.is_empty() {
            return;
        }
        let count = (self.worker_procs.len() as f64 * self.shape.process_churn).round() as usize;
        let mut exited = BTreeSet::new();
        for _ in 0..count {
            let slot = self.worker_procs[self.rng.index(self.worker_procs.len())];
            let old = self.processes[slot].pid;
            if !exited.insert(old) {
                continue;
            }
            let pid = self.alloc_pid();
            let parent =
                self.processes[self.client_procs[self.rng.index(self.client_procs.len())]].pid;
            let (name, cmdline) = self.worker();
            let ppid = if exited.contains(&parent) { 1 } else { parent };
            let p = &mut self.processes[slot];
            p.pid = pid;
            p.ppid = ppid;
            p.name = Str::new(&name);
            p.cmdline = Some(Str::from(cmdline));
            p.threads = 1 + self.rng.below(8) as u32;
        }
        for p in &mut self.processes {
            if exited.contains(&p.ppid) {
                p.ppid = 1;
            }
        }
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.connections)
            .into_iter()
            .partition(|c| c.client_pid.is_some_and(|pid| exited.contains(&pid)));
        self.connections = kept;
        for c in gone {
            self.close(c);
        }
    }

    /// Moves one publish interval on and returns the new full report.
    pub fn next_report(&mut self) -> Report {
        self.advance();
        self.report()
    }

    /// The full report a probe on this host would publish now.
    pub fn report(&self) -> Report {
        // Share repeated strings (keys, the host node ID, …) the way a decoded report does.
        let _intern = InternScope::enter();
        let now = self.now();
        let host_id = Str::from(id::host_id(&self.shape.hostname));
        let mut r = Report::empty();
        r.ts = self.ticks[0];
        r.window = TICK_NANOS * self.shape.samples as i64;
        r.id = Str::from(self.report_id.to_string());
        self.add_host(&mut r, &host_id, now);
        self.add_processes(&mut r, &host_id, now);
        self.add_containers(&mut r, &host_id, now);
        self.add_endpoints(&mut r, &host_id, now);
        let overlay = id::overlay_id(id::OverlayPeer::Docker(&self.shape.hostname));
        let mut node = Node::new(overlay.as_str()).with_topology("overlay");
        node.sets.add("local_networks", BRIDGE_SUBNET);
        r[TopologyKind::Overlay].add_node(node);
        self.add_dns(&mut r);
        add_presentation(&mut r);
        r
    }

    fn add_host(&self, r: &mut Report, host_id: &Str, now: GoTime) {
        let uptime = now.nanos_since(self.boot) / i128::from(TICK_NANOS);
        let mut node = Node::new(host_id.clone()).with_topology("host");
        node.latest = latest(vec![
            entry(ACTIVE_CONTROLS, now, "host_exec"),
            entry(CONTROL_PROBE_ID, now, self.probe_id.clone()),
            entry("host_name", now, self.shape.hostname.as_str()),
            entry(HOST_NODE_ID, now, host_id.clone()),
            entry("host_scope_version", now, env!("CARGO_PKG_VERSION")),
            entry(
                "kernel_version",
                now,
                "6.8.0-45-generic #45-Ubuntu SMP PREEMPT_DYNAMIC",
            ),
            entry("os", now, "linux"),
            entry("ts", now, now.to_rfc3339()),
            entry("uptime", now, uptime.to_string()),
        ]);
        for net in [
            "127.0.0.1/8".to_string(),
            "172.17.0.1/16".to_string(),
            format!("{}/16", ip_text(self.shape.address)),
        ] {
            node.sets.add("local_networks", Str::new(&net));
        }
        let ticks = &self.ticks;
        node.metrics = SortedMap::from_unsorted(vec![
            (
                Str::new("host_cpu_usage_percent"),
                self.host_cpu.metric(ticks, Some(100.0)),
            ),
            (
                Str::new("host_mem_usage_bytes"),
                self.host_memory
                    .metric(ticks, Some(self.shape.memory_bytes as f64)),
            ),
            (Str::new("load1"), self.load1.metric(ticks, None)),
        ]);
        node.add_parent("host", host_id.clone());
        r[TopologyKind::Host].add_node(node);
    }

    fn add_processes(&self, r: &mut Report, host_id: &Str, now: GoTime) {
        let ticks = &self.ticks;
        let cpu_cap = 100.0 * f64::from(self.shape.cpus);
        let topology = Str::new("process");
        let nodes = &mut r[TopologyKind::Process].nodes;
        for p in &self.processes {
            let node_id = Str::from(id::process_id(&self.shape.hostname, p.pid));
            let mut entries = Vec::with_capacity(7);
            if let Some(cmdline) = &p.cmdline {
                entries.push(entry("cmdline", now, cmdline.clone()));
            }
            entries.push(entry(HOST_NODE_ID, now, host_id.clone()));
            entries.push(entry("name", now, p.name.clone()));
            entries.push(entry("pid", now, p.pid.to_string()));
            if p.ppid != 0 {
                entries.push(entry("ppid", now, p.ppid.to_string()));
            }
            entries.push(entry("threads", now, Str::new(&p.threads.to_string())));
            let mut node = Node::new(node_id.clone());
            node.topology = topology.clone();
            if let Role::Contained(c) = p.role {
                let container = &self.containers[c];
                entries.push(entry("docker_container_id", now, container.id.clone()));
                node.add_parent("container", id::container_id(&container.id));
                if let Some(image) = self.images.get(container.image) {
                    node.add_parent("container_image", id::container_image_id(&image.id));
                }
            }
            node.latest = latest(entries);
            node.metrics = SortedMap::from_unsorted(vec![
                (
                    Str::new("open_files_count"),
                    p.open_files.metric(ticks, Some(65_536.0)),
                ),
                (
                    Str::new("process_cpu_usage_percent"),
                    p.cpu.metric(ticks, Some(cpu_cap)),
                ),
                (
                    Str::new("process_memory_usage_bytes"),
                    p.memory.metric(ticks, Some(u64::MAX as f64)),
                ),
            ]);
            node.add_parent("host", host_id.clone());
            nodes.insert(node_id, node);
        }
    }

    fn add_containers(&self, r: &mut Report, host_id: &Str, now: GoTime) {
        let ticks = &self.ticks;
        for c in &self.containers {
            let created = c.created;
            let uptime = (now.nanos_since(created) / i128::from(TICK_NANOS)) as i64;
            let image = self.images.get(c.image);
            let node_id = id::container_id(&c.id);
            let mut node = Node::new(node_id.as_str()).with_topology("container");
            let mut entries = vec![
                entry(ACTIVE_CONTROLS, now, CONTAINER_CONTROLS),
                entry(CONTROL_PROBE_ID, now, self.probe_id.clone()),
                entry(
                    "docker_container_command",
                    created,
                    IMAGES[c.image % IMAGES.len()].3,
                ),
                entry("docker_container_created", created, created.to_rfc3339()),
                entry("docker_container_hostname", created, &c.id[..12]),
                entry("docker_container_id", created, c.id.clone()),
                entry("docker_container_name", now, c.name.clone()),
                entry("docker_container_network_mode", now, "default"),
                entry(
                    "docker_container_restart_count",
                    now,
                    c.restart_count.to_string(),
                ),
                entry("docker_container_state", now, "running"),
                entry("docker_container_state_human", now, up_for(uptime)),
                entry("docker_container_uptime", now, uptime.to_string()),
                entry("docker_label_com.docker.compose.project", created, "shop"),
                entry(
                    "docker_label_com.docker.compose.service",
                    created,
                    c.name.clone(),
                ),
                entry(HOST_NODE_ID, now, host_id.clone()),
            ];
            if let Some(image) = image {
                entries.push(entry("docker_image_id", created, image.id.clone()));
                node.add_parent("container_image", id::container_image_id(&image.id));
            }
            node.latest = latest(entries);
            let ip = ip_text(c.address);
            let scope = id::address_scope(&self.shape.hostname, IpAddr::V4(c.address), true, None);
            node.sets.add("docker_container_ips", Str::new(&ip));
            node.sets.add(
                "docker_container_ips_with_scopes",
                id::address_id(&scope, &ip),
            );
            node.sets.add("docker_container_networks", "bridge");
            node.sets
                .add("docker_container_ports", format!("{}/tcp", c.port));
            node.metrics = SortedMap::from_unsorted(vec![
                (
                    Str::new("docker_cpu_total_usage"),
                    c.cpu.metric(ticks, Some(100.0)),
                ),
                (
                    Str::new("docker_memory_usage"),
                    c.memory.metric(ticks, Some(self.shape.memory_bytes as f64)),
                ),
            ]);
            node.add_parent("host", host_id.clone());
            r[TopologyKind::Container].add_node(node);
        }
        for image in &self.images {
            let node_id = id::container_image_id(&image.id);
            let mut node = Node::new(node_id.as_str()).with_topology("container_image");
            node.latest = latest(vec![
                entry("docker_image_id", now, image.id.clone()),
                entry("docker_image_name", now, image.name),
                entry("docker_image_size", now, image.size),
                entry("docker_image_tag", now, image.tag),
                entry("docker_image_virtual_size", now, image.size),
                entry(HOST_NODE_ID, now, host_id.clone()),
            ]);
            node.add_parent("host", host_id.clone());
            r[TopologyKind::ContainerImage].add_node(node);
        }
    }

    fn add_endpoints(&self, r: &mut Report, host_id: &Str, now: GoTime) {
        let topology = Str::new("endpoint");
        let nodes = &mut r[TopologyKind::Endpoint].nodes;
        for (end_id, end) in &self.ends {
            let mut node = Node::new(end_id.clone());
            node.topology = topology.clone();
            if let Some(pid) = end.pid {
                node.latest = latest(vec![
                    entry(HOST_NODE_ID, now, host_id.clone()),
                    entry("pid", now, pid.to_string()),
                ]);
            }
            if let Some(peer) = &end.peer {
                node.adjacency.insert(peer.clone());
            }
            nodes.insert(end_id.clone(), node);
        }
    }

    fn add_dns(&self, r: &mut Report) {
        let names = |items: &[&str]| items.iter().map(|s| Str::new(s)).collect::<StringSet>();
        r.dns.insert(
            Str::new("127.0.0.1"),
            DnsRecord {
                forward: StringSet::new(),
                reverse: names(&["localhost", &self.shape.hostname]),
            },
        );
        r.dns.insert(
            Str::from(ip_text(self.shape.address)),
            DnsRecord {
                forward: StringSet::new(),
                reverse: names(&[&self.shape.hostname]),
            },
        );
        for &k in &self.internet {
            let forward = [
                format!("api-{k}.example.com"),
                format!("cdn-{k}.example.net"),
            ];
            r.dns.insert(
                Str::from(ip_text(Ipv4Addr::new(203, 0, 113, k))),
                DnsRecord {
                    forward: forward.iter().map(|s| Str::new(s)).collect(),
                    reverse: StringSet::new(),
                },
            );
        }
    }
}

/// (id, label, dataType, priority, from) of a metadata template.
type MetadataRow = (&'static str, &'static str, &'static str, f64, &'static str);
/// (id, label, format, group, priority) of a metric template.
type MetricRow = (&'static str, &'static str, &'static str, &'static str, f64);
/// (id, human, icon, rank) of a control.
type ControlRow = (&'static str, &'static str, &'static str, i64);
/// (id, label, prefix, fixed rows as (latest key, label)) of a property list.
type TableRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

// The templates and controls a probe with the host, process, Docker and Weave reporters
// sends, as in Scope's published reports. One row per line: these are tables.
#[rustfmt::skip]
const HOST_METADATA: &[MetadataRow] = &[
    ("host_name", "Hostname", "", 11.0, "latest"),
    ("host_scope_version", "Scope version", "", 14.0, "latest"),
    ("kernel_version", "Kernel version", "", 1.0, "latest"),
    ("local_networks", "Local networks", "", 13.0, "sets"),
    ("os", "OS", "", 12.0, "latest"),
    ("uptime", "Uptime", "duration", 2.0, "latest"),
];
#[rustfmt::skip]
const HOST_METRICS: &[MetricRow] = &[
    ("host_cpu_usage_percent", "CPU", "percent", "", 1.0),
    ("host_mem_usage_bytes", "Memory", "filesize", "", 2.0),
    ("load1", "Load (1m)", "", "load", 11.0),
];
const HOST_CONTROLS: &[ControlRow] = &[("host_exec", "Exec shell", "fa fa-terminal", 0)];
#[rustfmt::skip]
const PROCESS_METADATA: &[MetadataRow] = &[
    ("cmdline", "Command", "", 2.0, "latest"),
    ("pid", "PID", "number", 1.0, "latest"),
    ("ppid", "Parent PID", "number", 3.0, "latest"),
    ("threads", "# Threads", "number", 4.0, "latest"),
];
#[rustfmt::skip]
const PROCESS_METRICS: &[MetricRow] = &[
    ("open_files_count", "Open files", "integer", "", 3.0),
    ("process_cpu_usage_percent", "CPU", "percent", "", 1.0),
    ("process_memory_usage_bytes", "Memory", "filesize", "", 2.0),
];
#[rustfmt::skip]
const CONTAINER_METADATA: &[MetadataRow] = &[
    ("docker_container_command", "Command", "", 3.0, "latest"),
    ("docker_container_created", "Created", "datetime", 10.0, "latest"),
    ("docker_container_id", "ID", "", 11.0, "latest"),
    ("docker_container_ips", "IPs", "", 8.0, "sets"),
    ("docker_container_networks", "Networks", "", 7.0, "sets"),
    ("docker_container_ports", "Ports", "", 9.0, "sets"),
    ("docker_container_restart_count", "Restart #", "", 6.0, "latest"),
    ("docker_container_state_human", "State", "", 4.0, "latest"),
    ("docker_container_uptime", "Uptime", "duration", 5.0, "latest"),
    ("docker_image_name", "Image name", "", 2.0, "latest"),
    ("docker_image_tag", "Image tag", "", 1.0, "latest"),
    ("weave_dns_hostname", "Weave DNS Name", "", 18.0, "latest"),
    ("weave_mac_address", "Weave MAC", "", 17.0, "latest"),
];
#[rustfmt::skip]
const CONTAINER_METRICS: &[MetricRow] = &[
    ("docker_cpu_total_usage", "CPU", "percent", "", 1.0),
    ("docker_memory_usage", "Memory", "filesize", "", 2.0),
];
#[rustfmt::skip]
const CONTAINER_CONTROL_ROWS: &[ControlRow] = &[
    ("docker_attach_container", "Attach", "fa fa-desktop", 1),
    ("docker_exec_container", "Exec shell", "fa fa-terminal", 2),
    ("docker_pause_container", "Pause", "fa fa-pause", 5),
    ("docker_remove_container", "Remove", "far fa-trash-alt", 8),
    ("docker_restart_container", "Restart", "fa fa-redo", 4),
    ("docker_start_container", "Start", "fa fa-play", 3),
    ("docker_stop_container", "Stop", "fa fa-stop", 7),
    ("docker_unpause_container", "Unpause", "fa fa-play", 6),
];
#[rustfmt::skip]
const CONTAINER_TABLES: &[TableRow] = &[
    ("docker_env_", "Environment variables", "docker_env_", &[]),
    ("docker_label_", "Docker labels", "docker_label_", &[]),
    ("image_table", "Image", "", &[
        ("docker_image_id", " ID"), ("docker_image_name", " Name"), ("docker_image_size", "Size"),
        ("docker_image_tag", " Tag"), ("docker_image_virtual_size", "Virtual size"),
    ]),
];
const IMAGE_METADATA: &[MetadataRow] = &[("container", "# Containers", "number", 2.0, "counters")];
#[rustfmt::skip]
const IMAGE_TABLES: &[TableRow] = &[
    ("docker_image_label_", "Docker labels", "docker_image_label_", &[]),
];
#[rustfmt::skip]
const OVERLAY_METADATA: &[MetadataRow] = &[
    ("weave_connection_count", "Connections", "", 8.0, "latest"),
    ("weave_encryption", "Encryption", "", 4.0, "latest"),
    ("weave_peer_count", "Peers", "", 7.0, "latest"),
    ("weave_peer_discovery", "Peer discovery", "", 5.0, "latest"),
    ("weave_peer_name", "Name", "", 3.0, "latest"),
    ("weave_protocol", "Protocol", "", 2.0, "latest"),
    ("weave_target_count", "Targets", "", 6.0, "latest"),
    ("weave_trusted_subnet_count", "Trusted subnets", "", 9.0, "sets"),
    ("weave_version", "Version", "", 1.0, "latest"),
];
#[rustfmt::skip]
const OVERLAY_TABLES: &[TableRow] = &[
    ("weave_connections_table_", "Connections", "weave_connections_table_", &[]),
    ("weave_dns_table", "DNS", "", &[
        ("weave_dns_domain", "Domain"), ("weave_dns_entry_count", "Entries"),
        ("weave_dns_ttl", "TTL"), ("weave_dns_upstream", "Upstream"),
    ]),
    ("weave_ipam_table", "IPAM", "", &[
        ("weave_ipam_default_subnet", "Default subnet"), ("weave_ipam_range", "Range"),
        ("weave_ipam_status", "Status"),
    ]),
    ("weave_plugin_table", "Plugin", "", &[
        ("weave_plugin_driver", "Driver name"), ("weave_plugin_status", "Status"),
    ]),
    ("weave_proxy_table", "Proxy", "", &[
        ("weave_proxy_address", "Address"), ("weave_proxy_status", "Status"),
    ]),
];
/// Weave's connection list, the one multicolumn table: (column id, label).
#[rustfmt::skip]
const WEAVE_CONNECTION_COLUMNS: &[(&str, &str)] = &[
    ("weave_connection_connection", "Connections"),
    ("weave_connection_state", "State"),
    ("weave_connection_info", "Info"),
];
const WEAVE_CONNECTIONS_PREFIX: &str = "weave_connections_multicolumn_table_";
#[rustfmt::skip]
const SWARM_SERVICE_METADATA: &[MetadataRow] = &[
    ("service_name", "Service name", "", 0.0, "latest"),
    ("stack_namespace", "Stack namespace", "", 1.0, "latest"),
];

/// Adds templates and controls to a topology.
fn present(
    t: &mut Topology,
    metadata: &[MetadataRow],
    metrics: &[MetricRow],
    controls: &[ControlRow],
    tables: &[TableRow],
) {
    for &(id, label, data_type, priority, from) in metadata {
        let template = MetadataTemplate {
            id: Str::new(id),
            label: Str::new(label),
            truncate: if id == "docker_container_id" { 12 } else { 0 },
            data_type: Str::new(data_type),
            priority,
            from: Str::new(from),
        };
        t.metadata_templates.insert(Str::new(id), template);
    }
    for &(id, label, format, group, priority) in metrics {
        let template = MetricTemplate {
            id: Str::new(id),
            label: Str::new(label),
            format: Str::new(format),
            group: Str::new(group),
            priority,
        };
        t.metric_templates.insert(Str::new(id), template);
    }
    for &(id, human, icon, rank) in controls {
        let control = Control {
            id: Str::new(id),
            human: Str::new(human),
            icon: Str::new(icon),
            rank,
            ..Control::default()
        };
        t.controls.insert(Str::new(id), control);
    }
    for &(id, label, prefix, fixed) in tables {
        let template = TableTemplate {
            id: Str::new(id),
            label: Str::new(label),
            prefix: Str::new(prefix),
            table_type: Str::new(PROPERTY_LIST),
            columns: Vec::new(),
            fixed_rows: fixed
                .iter()
                .map(|&(k, v)| (Str::new(k), Str::new(v)))
                .collect(),
        };
        t.table_templates.insert(Str::new(id), template);
    }
}

/// The presentation a probe sends with every full report.
fn add_presentation(r: &mut Report) {
    use TopologyKind as K;
    present(
        &mut r[K::Host],
        HOST_METADATA,
        HOST_METRICS,
        HOST_CONTROLS,
        &[],
    );
    present(
        &mut r[K::Process],
        PROCESS_METADATA,
        PROCESS_METRICS,
        &[],
        &[],
    );
    present(
        &mut r[K::Container],
        CONTAINER_METADATA,
        CONTAINER_METRICS,
        CONTAINER_CONTROL_ROWS,
        CONTAINER_TABLES,
    );
    present(
        &mut r[K::ContainerImage],
        IMAGE_METADATA,
        &[],
        &[],
        IMAGE_TABLES,
    );
    present(
        &mut r[K::Overlay],
        OVERLAY_METADATA,
        &[],
        &[],
        OVERLAY_TABLES,
    );
    present(
        &mut r[K::SwarmService],
        SWARM_SERVICE_METADATA,
        &[],
        &[],
        &[],
    );
    let connections = TableTemplate {
        id: Str::new(WEAVE_CONNECTIONS_PREFIX),
        label: Str::empty(),
        prefix: Str::new(WEAVE_CONNECTIONS_PREFIX),
        table_type: Str::new(MULTICOLUMN_TABLE),
        columns: WEAVE_CONNECTION_COLUMNS
            .iter()
            .map(|&(id, label)| Column {
                id: Str::new(id),
                label: Str::new(label),
                data_type: Str::empty(),
            })
            .collect(),
        fixed_rows: BTreeMap::new(),
    };
    r[K::Overlay]
        .table_templates
        .insert(Str::new(WEAVE_CONNECTIONS_PREFIX), connections);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, Encoding, Format};

    fn start() -> GoTime {
        GoTime::from_unix(1_790_000_000, 123_456_789).expect("in range")
    }

    fn small() -> HostShape {
        HostShape {
            processes: 120,
            endpoints: 301,
            containers: 4,
            ..HostShape::fleet_member(3)
        }
    }

    fn counts(r: &Report) -> (usize, usize, usize, usize, usize) {
        (
            r[TopologyKind::Host].nodes.len(),
            r[TopologyKind::Process].nodes.len(),
            r[TopologyKind::Endpoint].nodes.len(),
            r[TopologyKind::Container].nodes.len(),
            r[TopologyKind::ContainerImage].nodes.len(),
        )
    }

    #[test]
    fn node_counts_match_the_shape() {
        for shape in [HostShape::busy_host(), HostShape::fleet_member(7), small()] {
            let r = host_report(&shape, 42, start());
            assert_eq!(
                counts(&r),
                (1, shape.processes, shape.endpoints, shape.containers, 1),
                "{}",
                shape.hostname
            );
        }
    }

    #[test]
    fn tiny_and_empty_shapes_still_give_exact_counts() {
        for (processes, endpoints, containers) in
            [(0, 0, 0), (0, 1, 3), (1, 1, 0), (3, 5, 2), (40, 2, 6)]
        {
            let shape = HostShape {
                processes,
                endpoints,
                containers,
                ..small()
            };
            let mut sim = HostSimulator::new(shape, 9, start());
            for _ in 0..3 {
                let r = sim.next_report();
                let (_, p, e, c, _) = counts(&r);
                assert_eq!((p, e, c), (processes, endpoints, containers));
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_reports() {
        let a = host_report(&small(), 7, start());
        let b = host_report(&small(), 7, start());
        assert_eq!(a, b);
        assert_ne!(a, host_report(&small(), 8, start()));
        let mut sa = HostSimulator::new(small(), 7, start());
        let mut sb = HostSimulator::new(small(), 7, start());
        assert_eq!(sa.next_report(), sb.next_report());
    }

    #[test]
    fn reports_round_trip_through_every_codec() {
        let r = host_report(&small(), 1, start());
        for format in [Format::Json, Format::Msgpack] {
            for gzip in [false, true] {
                let bytes = codec::encode(&r, Encoding { format, gzip });
                let back = codec::decode(&bytes).expect("our own output decodes");
                assert!(
                    back == r,
                    "{format} (gzip {gzip}) round trip changed the report"
                );
            }
        }
    }

    #[test]
    fn reports_are_valid_and_ids_follow_the_protocol() {
        let r = host_report(&small(), 3, start());
        let problems = crate::validate::validate(&r, &Default::default());
        assert!(problems.is_empty(), "{problems:?}");
        let host = "node-003";
        let host_node = id::host_id(host);
        assert!(r[TopologyKind::Host].nodes.contains_key(host_node.as_str()));
        let pids: BTreeSet<&str> = r[TopologyKind::Process]
            .nodes
            .values()
            .map(|n| {
                n.latest_value("pid")
                    .expect("every process has a pid")
                    .as_str()
            })
            .collect();
        let mut loopback = 0;
        for (key, node) in &r[TopologyKind::Endpoint].nodes {
            let parsed = id::parse_endpoint_id(key).expect("endpoint IDs have three parts");
            match parsed.ip {
                "127.0.0.1" => {
                    loopback += 1;
                    assert_eq!(parsed.scope, host, "{key}");
                }
                ip if ip.starts_with("172.17.") => assert_eq!(parsed.scope, host, "{key}"),
                _ => assert_eq!(parsed.scope, "", "{key}"),
            }
            if let Some(pid) = node.latest_value("pid") {
                assert!(
                    pids.contains(pid.as_str()),
                    "{key} names a missing pid {pid}"
                );
                assert_eq!(
                    node.latest_value(HOST_NODE_ID).map(Str::as_str),
                    Some(host_node.as_str())
                );
            }
        }
        assert!(loopback > 0);
        for node in r[TopologyKind::Process].nodes.values() {
            let (h, _) = id::parse_process_id(&node.id).expect("process IDs are host;pid");
            assert_eq!(h, host);
            assert_eq!(
                node.parents
                    .get("host")
                    .and_then(|s| s.first())
                    .map(Str::as_str),
                Some(host_node.as_str())
            );
            assert_eq!(
                node.metrics
                    .values()
                    .map(|m| m.samples.len())
                    .collect::<Vec<_>>(),
                [3, 3, 3]
            );
            for (topology, ids) in node.parents.iter() {
                let kind = TopologyKind::from_name(topology).expect("known topology");
                for parent in ids {
                    assert!(r[kind].nodes.contains_key(parent.as_str()), "{parent}");
                }
            }
        }
    }

    #[test]
    fn consecutive_reports_give_a_small_delta_that_rebuilds_the_next_report() {
        let mut sim = HostSimulator::new(HostShape::fleet_member(1), 5, start());
        let first = sim.report();
        let second = sim.next_report();
        assert!(second.ts > first.ts);
        assert_eq!(counts(&second), counts(&first));
        let delta = second.delta_from(&first);
        let full_nodes = second.node_count();
        let changed_ids = delta
            .topologies()
            .flat_map(|(_, t)| t.nodes.values())
            .filter(|n| !n.id.is_empty())
            .count();
        assert!(
            changed_ids > 0 && changed_ids < full_nodes / 5,
            "{changed_ids} new nodes"
        );
        let mut rebuilt = first.clone();
        rebuilt.apply_delta(&delta);
        // A delta leaves out `latest` sections whose values did not change, so the
        // rebuilt report may keep older timestamps; everything else must match.
        let values = |n: &Node| {
            let mut n = n.clone();
            n.latest
                .iter_mut()
                .for_each(|(_, e)| e.timestamp = GoTime::ZERO);
            n
        };
        for (kind, topology) in second.topologies() {
            for (key, node) in &topology.nodes {
                let got = rebuilt[kind].nodes.get(key).map(values);
                assert_eq!(got, Some(values(node)), "{key}");
            }
        }
    }

    #[test]
    fn a_fleet_merges_into_one_report_with_shared_images() {
        let fleet = fleet_reports(4, 11, start());
        let mut merged = Report::empty();
        for r in fleet {
            merged.merge_owned(r);
        }
        assert_eq!(merged[TopologyKind::Host].nodes.len(), 4);
        assert_eq!(merged[TopologyKind::Process].nodes.len(), 4 * 500);
        assert_eq!(merged[TopologyKind::ContainerImage].nodes.len(), 1);
        let image = merged[TopologyKind::ContainerImage]
            .nodes
            .values()
            .next()
            .expect("one image");
        assert_eq!(image.parents.get("host").map(StringSet::len), Some(4));
    }
}
