//! The views the API offers, their options, and how options filter nodes
//! (protocol.md §7.2.2, §8.2, §8.5).

use std::collections::HashSet;

use rescope_report::fasthash::FastSet;
use rescope_report::{Node, Str, StringSet, id};
use serde::Serialize;

use crate::pipeline::{Nodes, is_pseudo};

/// Which nodes an option keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predicate {
    /// Keeps everything.
    All,
    /// Only application containers (not Scope's, Weave's, ECS's or Kubernetes' own).
    Application,
    /// The complement of `Application`.
    System,
    /// Containers that are running, restarting or paused (or have no state).
    Running,
    Stopped,
    /// Hides uncontained and unmanaged pseudo nodes (applies to pseudo nodes too).
    HidePseudo,
    /// Nodes with a connection to another node.
    Connected,
    /// Not persistent volumes, claims or storage classes.
    NotStorage,
    /// Not volume snapshots or their data.
    NotSnapshot,
}

impl Predicate {
    /// Whether the predicate also decides about pseudo nodes (otherwise they pass).
    fn pseudo_aware(self) -> bool {
        matches!(self, Predicate::HidePseudo)
    }

    fn keeps(self, n: &Node) -> bool {
        match self {
            Predicate::All => true,
            Predicate::Application => !is_system(n),
            Predicate::System => is_system(n),
            Predicate::Running => n
                .latest_value("docker_container_state")
                .is_none_or(|s| matches!(s.as_str(), "running" | "restarting" | "paused")),
            Predicate::Stopped => !Predicate::Running.keeps(n),
            Predicate::HidePseudo => {
                !is_pseudo(n)
                    || n.id == id::INCOMING_INTERNET_ID
                    || n.id == id::OUTGOING_INTERNET_ID
                    || n.id.starts_with(id::SERVICE_PREFIX)
            }
            Predicate::Connected => n.latest.contains_key("is_connected"),
            Predicate::NotStorage => !matches!(
                n.topology.as_str(),
                "persistent_volume" | "persistent_volume_claim" | "storage_class"
            ),
            Predicate::NotSnapshot => !matches!(
                n.topology.as_str(),
                "volume_snapshot" | "volume_snapshot_data"
            ),
        }
    }

    /// Whether a node passes this option (pseudo nodes pass unless the option is
    /// about them).
    pub fn matches(self, n: &Node) -> bool {
        if !self.pseudo_aware() && is_pseudo(n) {
            return true;
        }
        self.keeps(n)
    }
}

const SYSTEM_CONTAINER_NAMES: [&str; 6] = [
    "weavescope",
    "weavedns",
    "weave",
    "weaveproxy",
    "weaveexec",
    "ecs-agent",
];
const SYSTEM_IMAGES: [&str; 9] = [
    "swarm",
    "weaveworks/scope",
    "weaveworks/weavedns",
    "weaveworks/weave",
    "weaveworks/weaveproxy",
    "weaveworks/weaveexec",
    "amazon/amazon-ecs-agent",
    "openshift/origin-pod",
    "docker.io/openshift/origin-pod",
];
const PAUSE_IMAGES: [&str; 3] = ["google_containers/pause", "k8s.gcr.io/pause", "eks/pause"];

fn is_system(n: &Node) -> bool {
    let latest = |k: &str| n.latest_value(k).map(|v| v.as_str());
    if latest("docker_container_name").is_some_and(|name| SYSTEM_CONTAINER_NAMES.contains(&name)) {
        return true;
    }
    if let Some(image) = latest("docker_image_name") {
        let base = image.split(':').next().unwrap_or(image);
        if SYSTEM_IMAGES.contains(&base) || PAUSE_IMAGES.iter().any(|p| image.contains(p)) {
            return true;
        }
    }
    latest("docker_label_io.kubernetes.docker.type") == Some("podsandbox")
        || latest("docker_label_works.weave.role") == Some("system")
        || latest("docker_image_label_works.weave.role") == Some("system")
        || latest("docker_label_io.kubernetes.pod.namespace") == Some("kube-system")
        || latest("docker_label_io.kubernetes.pod.name")
            .is_some_and(|p| p.starts_with("kube-system/"))
}

/// One choice of an option group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptionChoice {
    pub value: &'static str,
    pub label: &'static str,
    #[serde(skip)]
    pub predicate: Predicate,
}

/// A group of mutually exclusive choices (`system`, `stopped`, `pseudo`, …).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptionGroup {
    pub id: &'static str,
    #[serde(rename = "defaultValue")]
    pub default_value: &'static str,
    pub options: Vec<OptionChoice>,
    #[serde(rename = "selectType", skip_serializing_if = "str::is_empty")]
    pub select_type: &'static str,
    #[serde(rename = "noneLabel", skip_serializing_if = "str::is_empty")]
    pub none_label: &'static str,
}

fn choice(value: &'static str, label: &'static str, predicate: Predicate) -> OptionChoice {
    OptionChoice {
        value,
        label,
        predicate,
    }
}

fn group(id: &'static str, default_value: &'static str, options: Vec<OptionChoice>) -> OptionGroup {
    OptionGroup {
        id,
        default_value,
        options,
        select_type: "",
        none_label: "",
    }
}

fn container_options() -> Vec<OptionGroup> {
    vec![
        group(
            "system",
            "application",
            vec![
                choice("all", "All", Predicate::All),
                choice("system", "System containers", Predicate::System),
                choice(
                    "application",
                    "Application containers",
                    Predicate::Application,
                ),
            ],
        ),
        group(
            "stopped",
            "running",
            vec![
                choice("stopped", "Stopped containers", Predicate::Stopped),
                choice("running", "Running containers", Predicate::Running),
                choice("both", "Both", Predicate::All),
            ],
        ),
        group(
            "pseudo",
            "hide",
            vec![
                choice("show", "Show uncontained", Predicate::All),
                choice("hide", "Hide uncontained", Predicate::HidePseudo),
            ],
        ),
    ]
}

fn unmanaged() -> Vec<OptionGroup> {
    vec![group(
        "pseudo",
        "hide",
        vec![
            choice("show", "Show unmanaged", Predicate::All),
            choice("hide", "Hide unmanaged", Predicate::HidePseudo),
        ],
    )]
}

fn unconnected() -> Vec<OptionGroup> {
    vec![group(
        "unconnected",
        "hide",
        vec![
            choice("show", "Show unconnected", Predicate::All),
            choice("hide", "Hide unconnected", Predicate::Connected),
        ],
    )]
}

fn pod_options() -> Vec<OptionGroup> {
    let mut groups = vec![
        group(
            "snapshot",
            "hide",
            vec![
                choice("show", "Show snapshots", Predicate::All),
                choice("hide", "Hide snapshots", Predicate::NotSnapshot),
            ],
        ),
        group(
            "storage",
            "hide",
            vec![
                choice("show", "Show storage", Predicate::All),
                choice("hide", "Hide storage", Predicate::NotStorage),
            ],
        ),
    ];
    groups.extend(unmanaged());
    groups
}

/// A view of the API.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewSpec {
    pub id: &'static str,
    pub name: &'static str,
    pub parent: Option<&'static str>,
    pub rank: i64,
    pub hide_if_empty: bool,
    pub options: Option<Vec<OptionGroup>>,
}

/// Every view, parents before their sub-views, sub-views in registration order.
pub fn views() -> Vec<ViewSpec> {
    let v = |id, name, parent, rank, hide_if_empty, options| ViewSpec {
        id,
        name,
        parent,
        rank,
        hide_if_empty,
        options,
    };
    vec![
        v("processes", "Processes", None, 1, true, Some(unconnected())),
        v(
            "processes-by-name",
            "by name",
            Some("processes"),
            0,
            true,
            Some(unconnected()),
        ),
        v(
            "containers",
            "Containers",
            None,
            2,
            false,
            Some(container_options()),
        ),
        v(
            "containers-by-hostname",
            "by DNS name",
            Some("containers"),
            0,
            false,
            Some(container_options()),
        ),
        v(
            "containers-by-image",
            "by image",
            Some("containers"),
            0,
            false,
            Some(container_options()),
        ),
        v("pods", "Pods", None, 3, true, Some(pod_options())),
        v(
            "kube-controllers",
            "Controllers",
            Some("pods"),
            0,
            true,
            Some(unmanaged()),
        ),
        v(
            "services",
            "Services",
            Some("pods"),
            0,
            true,
            Some(unmanaged()),
        ),
        v("ecs-tasks", "Tasks", None, 3, true, Some(unmanaged())),
        v(
            "ecs-services",
            "Services",
            Some("ecs-tasks"),
            0,
            true,
            Some(unmanaged()),
        ),
        v(
            "swarm-services",
            "Services",
            None,
            3,
            true,
            Some(unmanaged()),
        ),
        v("hosts", "Hosts", None, 4, false, None),
        v("weave", "Weave Net", Some("hosts"), 0, false, None),
    ]
}

/// The view with this ID.
pub fn view(id: &str) -> Option<ViewSpec> {
    views().into_iter().find(|v| v.id == id)
}

/// Which nodes of a rendered view a request's options keep, and which of their edges
/// remain, worked out without copying the view (see [`Selection::of`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// Nodes the options (or the unconnected-pseudo filter) removed.
    pub removed: HashSet<Str>,
    /// Whether edges are restricted to the kept nodes. Scope prunes edges only when a
    /// step removed nodes, so a view nothing was removed from keeps dangling edges.
    pub prune: bool,
    /// How many nodes were removed.
    pub filtered: usize,
}

impl Selection {
    /// Applies a view's options as the request's query selects them. With no query
    /// parameters at all, Scope applies no option (not even the defaults); only pseudo
    /// nodes without connections are removed.
    pub fn of(nodes: &Nodes, groups: &[OptionGroup], query: &[(String, String)]) -> Selection {
        let mut removed: HashSet<Str> = HashSet::new();
        if !query.is_empty() {
            let selected = selected_predicates(groups, query);
            for (id, n) in nodes {
                if !selected
                    .iter()
                    .all(|any_of| any_of.iter().any(|p| p.matches(n)))
                {
                    removed.insert(id.clone());
                }
            }
        }
        let pruned_first = !removed.is_empty();
        // The Internet-to-Internet edge goes; then pseudo nodes without an edge to or
        // from another node (edges as the first step left them).
        let kept_after_first =
            |t: &Str| !pruned_first || (nodes.contains_key(t) && !removed.contains(t));
        // Only whether pseudo nodes are linked matters: the few there are.
        let pseudo: FastSet<&Str> = nodes
            .iter()
            .filter(|(nid, n)| is_pseudo(n) && !removed.contains(*nid))
            .map(|(nid, _)| nid)
            .collect();
        let mut linked: FastSet<&Str> = FastSet::default();
        if !pseudo.is_empty() {
            for (nid, node) in nodes {
                if removed.contains(nid) {
                    continue;
                }
                let from_pseudo = pseudo.contains(nid);
                for t in node.adjacency.iter() {
                    if t != nid && kept_after_first(t) && !internet_to_internet(nid, t) {
                        if from_pseudo {
                            linked.insert(nid);
                        }
                        if let Some(t) = pseudo.get(t) {
                            linked.insert(t);
                        }
                    }
                }
            }
        }
        let unlinked: Vec<Str> = pseudo
            .into_iter()
            .filter(|nid| !linked.contains(nid))
            .cloned()
            .collect();
        let prune = pruned_first || !unlinked.is_empty();
        removed.extend(unlinked);
        let filtered = removed.len();
        Selection {
            removed,
            prune,
            filtered,
        }
    }

    pub fn keeps(&self, id: &str) -> bool {
        !self.removed.contains(id)
    }

    /// The edges of a kept node as the options leave them.
    pub fn adjacency<'a>(
        &'a self,
        nodes: &'a Nodes,
        id: &'a Str,
        node: &'a Node,
    ) -> impl Iterator<Item = &'a Str> + 'a {
        node.adjacency.iter().filter(move |t| {
            !internet_to_internet(id, t)
                && (!self.prune || (nodes.contains_key(*t) && !self.removed.contains(*t)))
        })
    }
}

fn internet_to_internet(from: &str, to: &str) -> bool {
    from == id::INCOMING_INTERNET_ID && to == id::OUTGOING_INTERNET_ID
}

fn selected_predicates(groups: &[OptionGroup], query: &[(String, String)]) -> Vec<Vec<Predicate>> {
    groups
        .iter()
        .map(|g| {
            let value = query
                .iter()
                .find(|(k, _)| k == g.id)
                .map(|(_, v)| v.as_str())
                .unwrap_or(g.default_value);
            let values: Vec<&str> = if g.select_type == "union" {
                value.split(',').collect()
            } else {
                vec![value]
            };
            g.options
                .iter()
                .filter(|o| values.contains(&o.value))
                .map(|o| o.predicate)
                .collect()
        })
        .filter(|preds: &Vec<Predicate>| !preds.is_empty())
        .collect()
}

/// Applies a view's options as the request's query selects them (see
/// [`Selection::of`]), removing nodes and edges from `nodes`. Returns how many nodes
/// were removed.
pub fn apply_options(
    nodes: &mut Nodes,
    groups: &[OptionGroup],
    query: &[(String, String)],
) -> usize {
    let selection = Selection::of(nodes, groups, query);
    let edges: Vec<(Str, StringSet)> = nodes
        .iter()
        .filter(|(id, _)| selection.keeps(id))
        .map(|(id, n)| {
            (
                id.clone(),
                selection.adjacency(nodes, id, n).cloned().collect(),
            )
        })
        .collect();
    nodes.retain(|id, _| selection.keeps(id));
    for (id, adjacency) in edges {
        if let Some(n) = nodes.get_mut(&id) {
            n.adjacency = adjacency;
        }
    }
    selection.filtered
}
