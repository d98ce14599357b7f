import { FitAddon } from "@xterm/addon-fit";
import { Terminal as XTerm } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import { useEffect, useRef, useState } from "react";
import { deletePipe, postControl, wsUrl } from "../api";
import { useStore, type Terminal } from "../store";

type Status = "connecting" | "open" | "closed";

/**
 * A terminal wired to a pipe: keystrokes go out as text frames, output comes back as
 * binary frames, size changes are sent with the control the app named, and closing the
 * panel deletes the pipe (which stops the shell or exec on the probe).
 */
function Session({ t }: { t: Terminal }) {
  const box = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState<Status>("connecting");
  const close = () => {
    void deletePipe(t.pipeId);
    useStore.setState({ terminal: null });
  };

  useEffect(() => {
    const dark = useStore.getState().theme === "dark";
    const term = new XTerm({
      convertEol: !t.raw,
      cursorBlink: true,
      fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
      fontSize: 13,
      theme: dark ? { background: "#0b1020" } : { background: "#111827", foreground: "#e5e7eb" },
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(box.current!);
    const ws = new WebSocket(wsUrl(`api/pipe/${encodeURIComponent(t.pipeId)}`));
    ws.binaryType = "arraybuffer";
    let last = "";
    const sendSize = () => {
      try {
        fit.fit();
      } catch {
        return;
      }
      const size = `${term.cols}x${term.rows}`;
      if (!t.resizeControl || size === last) return;
      last = size;
      postControl(t.probeId, t.nodeId, t.resizeControl, {
        height: String(term.rows),
        width: String(term.cols),
        pipeID: t.pipeId,
      }).catch((e) => useStore.getState().toast(`Resize: ${(e as Error).message}`));
    };
    ws.onopen = () => {
      setStatus("open");
      sendSize();
      term.focus();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") term.write(ev.data);
      else term.write(new Uint8Array(ev.data as ArrayBuffer));
    };
    ws.onclose = () => {
      setStatus("closed");
      term.write("\r\n\x1b[2m[the session has ended]\x1b[0m\r\n");
    };
    const input = term.onData((d) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(d);
    });
    const observer = new ResizeObserver(() => sendSize());
    observer.observe(box.current!);
    (window as unknown as { __rescopeTerminal?: XTerm }).__rescopeTerminal = term;
    return () => {
      observer.disconnect();
      input.dispose();
      ws.onclose = null;
      ws.close();
      term.dispose();
    };
  }, [t]);

  return (
    <section className="terminal-panel" aria-label="Terminal" data-testid="terminal" data-status={status}>
      <header>
        <span className={`dot ${status}`} aria-hidden />
        <span className="terminal-title">{t.title}</span>
        <span className="terminal-status">{status === "closed" ? "ended" : status}</span>
        <button className="close" title="Close terminal" aria-label="Close terminal" onClick={close}>
          ×
        </button>
      </header>
      <div className="terminal-body" ref={box} />
    </section>
  );
}

export default function TerminalPanel() {
  const t = useStore((s) => s.terminal);
  if (!t) return null;
  return <Session key={t.pipeId} t={t} />;
}
