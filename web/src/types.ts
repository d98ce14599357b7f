// Shapes of the JSON the Rescope app serves. They are Weave Scope's API shapes
// (design/protocol.md §7), so this UI also works against a Scope app.

export interface OptionValue {
  value: string;
  label: string;
}

export interface OptionGroup {
  id: string;
  defaultValue: string;
  options?: OptionValue[] | null;
  selectType?: "one" | "union";
  noneLabel?: string;
}

export interface TopologyStats {
  node_count: number;
  nonpseudo_node_count: number;
  edge_count: number;
  filtered_nodes: number;
}

export interface TopologyDesc {
  name: string;
  rank: number;
  hide_if_empty: boolean;
  url: string;
  options?: OptionGroup[] | null;
  stats?: TopologyStats;
  sub_topologies?: TopologyDesc[];
}

export interface MetadataRow {
  id: string;
  label: string;
  value: string;
  priority?: number;
  dataType?: string;
  truncate?: number;
}

export interface Sample {
  date: string;
  value: number;
}

export interface MetricRow {
  id: string;
  label: string;
  format?: string;
  group?: string;
  value: number;
  valueEmpty?: boolean;
  priority?: number;
  samples: Sample[] | null;
  min: number;
  max: number;
  url?: string;
}

export interface TableColumn {
  id: string;
  label: string;
  dataType?: string;
  defaultSort?: boolean;
}

export interface TableRow {
  id: string;
  entries: Record<string, string>;
}

export interface Table {
  id: string;
  label: string;
  type: string;
  columns: TableColumn[] | null;
  rows: TableRow[] | null;
  truncationCount?: number;
}

export interface Parent {
  id: string;
  label: string;
  topologyId: string;
}

export interface NodeSummary {
  id: string;
  label: string;
  labelMinor: string;
  rank: string;
  shape?: string;
  tag?: string;
  stack?: boolean;
  pseudo?: boolean;
  metadata?: MetadataRow[];
  parents?: Parent[];
  metrics?: MetricRow[];
  tables?: Table[];
  adjacency?: string[];
}

export interface Control {
  probeId: string;
  nodeId: string;
  id: string;
  human: string;
  icon: string;
  rank: number;
  confirmation?: string;
}

export interface ChildGroup {
  id: string;
  label: string;
  topologyId: string;
  columns: TableColumn[] | null;
  nodes: NodeSummary[] | null;
}

export interface ConnectionRow {
  id: string;
  nodeId: string;
  label: string;
  labelMinor?: string;
  metadata?: MetadataRow[];
}

export interface ConnectionTable {
  id: string;
  topologyId: string;
  label: string;
  columns: TableColumn[] | null;
  connections: ConnectionRow[] | null;
}

export interface NodeDetails extends NodeSummary {
  controls: Control[];
  children?: ChildGroup[];
  connections?: ConnectionTable[];
}

export interface TopologyDiff {
  add: NodeSummary[] | null;
  update: NodeSummary[] | null;
  remove: string[] | null;
  reset?: boolean;
}

export interface PluginSpec {
  id: string;
  label?: string;
  description?: string;
  interfaces?: string[];
  api_version?: string;
  status?: string;
}

export interface ApiInfo {
  id: string;
  version: string;
  hostname: string;
  plugins: PluginSpec[] | null;
  capabilities?: { historic_reports?: boolean };
}

export interface ControlResponse {
  pipe?: string;
  raw_tty?: boolean;
  resize_tty_control?: string;
  removedNode?: string;
  value?: unknown;
  error?: string;
}
