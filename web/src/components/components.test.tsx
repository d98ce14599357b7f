import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { useStore } from "../store";
import type { NodeSummary } from "../types";
import Plugins from "./Plugins";
import TableView from "./TableView";

afterEach(cleanup);

describe("plugins list", () => {
  it("says n/a without plugins", () => {
    useStore.setState({ api: { id: "x", version: "1", hostname: "h", plugins: [] } });
    render(<Plugins />);
    expect(screen.getByText("n/a")).toBeTruthy();
  });

  it("shows a failing plugin's status where it can be seen", () => {
    useStore.setState({
      api: {
        id: "x",
        version: "1",
        hostname: "h",
        plugins: [
          { id: "iowait", label: "IO wait", description: "io", status: "ok" },
          { id: "broken", label: "Broken", description: "d", status: "error: plugin returned HTTP 500" },
        ],
      },
    });
    const { container } = render(<Plugins />);
    const broken = container.querySelector('[data-plugin="broken"]')!;
    expect(broken.className).toContain("failing");
    expect(broken.textContent).toContain("error: plugin returned HTTP 500");
    expect(broken.getAttribute("title")).toBe("Description: d\nStatus: error: plugin returned HTTP 500");
    expect(container.querySelector('[data-plugin="iowait"]')!.className).not.toContain("failing");
  });
});

describe("table view", () => {
  const proc = (pid: number, cpu: number): NodeSummary => ({
    id: `h;${pid}`,
    label: `p${pid}`,
    labelMinor: "",
    rank: "",
    metadata: [{ id: "pid", label: "PID", value: String(pid), dataType: "number" }],
    metrics: [{ id: "cpu", label: "CPU", format: "percent", value: cpu, samples: null, min: 0, max: 100 }],
  });

  it("sorts by a metric column, highest first, and numbers as numbers", () => {
    const nodes = new Map([proc(9, 5), proc(10, 50), proc(100, 1)].map((n) => [n.id, n]));
    const { container } = render(<TableView nodes={nodes} matches={null} />);
    const order = () => [...container.querySelectorAll("tr[data-node]")].map((r) => r.getAttribute("data-node"));
    fireEvent.click(screen.getByText("CPU"));
    expect(order()).toEqual(["h;10", "h;9", "h;100"]);
    fireEvent.click(screen.getByText("PID"));
    expect(order()).toEqual(["h;9", "h;10", "h;100"]);
  });

  it("shows only search matches", () => {
    const nodes = new Map([proc(1, 0), proc(2, 0)].map((n) => [n.id, n]));
    const { container } = render(<TableView nodes={nodes} matches={new Set(["h;2"])} />);
    expect([...container.querySelectorAll("tr[data-node]")].map((r) => r.getAttribute("data-node"))).toEqual(["h;2"]);
  });
});
