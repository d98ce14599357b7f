import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Sample } from "../types";

/** A small line chart of a metric's samples (uPlot on a canvas). */
export default function Sparkline({ samples, max, width = 110, height = 26 }: { samples: Sample[]; max?: number; width?: number; height?: number }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const xs = samples.map((s) => Date.parse(s.date) / 1000);
    const ys = samples.map((s) => s.value);
    const data: uPlot.AlignedData = [xs, ys];
    if (plot.current) {
      plot.current.setData(data);
      return;
    }
    const color = getComputedStyle(box.current!).getPropertyValue("--accent").trim() || "#3b82f6";
    plot.current = new uPlot(
      {
        width,
        height,
        cursor: { show: false },
        legend: { show: false },
        select: { show: false, left: 0, top: 0, width: 0, height: 0 },
        axes: [{ show: false }, { show: false }],
        scales: { x: { time: false }, y: { range: (_u, lo, hi) => [Math.min(0, lo), Math.max(hi, max ?? hi, 1e-9)] } },
        series: [{}, { stroke: color, width: 1.5, fill: `${color}33`, points: { show: false } }],
      },
      data,
      box.current!,
    );
  }, [samples, max, width, height]);

  useEffect(() => () => {
    plot.current?.destroy();
    plot.current = null;
  }, []);

  return <div className="sparkline" ref={box} data-testid="sparkline" data-samples={samples.length} />;
}
