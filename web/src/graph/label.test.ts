import { describe, expect, it } from "vitest";
import { cutLabel } from "./label";

// One pixel per character: easy to reason about.
const measure = (s: string) => s.length;

describe("cutLabel", () => {
  it("leaves labels that fit alone", () => {
    expect(cutLabel(measure, "nginx", 5)).toBe("nginx");
    expect(cutLabel(measure, "/usr/bin/nginx", 14)).toBe("/usr/bin/nginx");
  });

  it("keeps the last segment of a path", () => {
    expect(cutLabel(measure, "/usr/lib/chromium/chromium", 12)).toBe("…/chromium");
    expect(cutLabel(measure, "docker.io/library/nginx:1.27", 14)).toBe("…/nginx:1.27");
  });

  it("cuts the last segment at its end when even it is too wide", () => {
    expect(cutLabel(measure, "/usr/lib/chromium/chromium", 6)).toBe("chrom…");
  });

  it("drops the directories of a command line's program", () => {
    const cmd = "/usr/lib/chromium/chromium --type=renderer";
    expect(cutLabel(measure, cmd, 30)).toBe("…/chromium --type=renderer");
    expect(cutLabel(measure, cmd, 20)).toBe("chromium --type=ren…");
  });

  it("cuts other labels at their end", () => {
    expect(cutLabel(measure, "python3 /opt/app/server.py", 8)).toBe("python3…");
    expect(cutLabel(measure, "[kworker/R-rcu_gp]", 9)).toBe("[kworker…");
    expect(cutLabel(measure, "averyverylongname", 5)).toBe("aver…");
  });

  it("treats a trailing slash as part of the last segment", () => {
    expect(cutLabel(measure, "/var/lib/data/", 8)).toBe("…/data/");
  });

  it("keeps a closing group such as a PID and cuts what comes before it", () => {
    expect(cutLabel(measure, "worker-node-17 (123456)", 14)).toBe("work… (123456)");
    expect(cutLabel(measure, "/usr/sbin/nginx (80)", 12)).toBe("…/nginx (80)");
    // No room for even the group: cut like any other label.
    expect(cutLabel(measure, "vm (123456)", 6)).toBe("vm (1…");
  });

  it("gives nothing when not one character fits", () => {
    expect(cutLabel(measure, "abc", 1)).toBe("");
    expect(cutLabel(measure, "/a/bcdef", 1)).toBe("");
  });
});
