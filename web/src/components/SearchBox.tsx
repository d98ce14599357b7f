import { forwardRef } from "react";
import { useStore } from "../store";

/** Search across labels and metadata; Enter pins the query, pins combine with AND. */
const SearchBox = forwardRef<HTMLInputElement, { matchCount: number | null }>(function SearchBox({ matchCount }, ref) {
  const query = useStore((s) => s.searchQuery);
  const pinned = useStore((s) => s.pinnedSearches);
  const setSearch = useStore((s) => s.setSearch);
  const pin = useStore((s) => s.pinSearch);
  const unpin = useStore((s) => s.unpinSearch);
  return (
    <div className="search" role="search">
      {pinned.map((p) => (
        <span key={p} className="pinned" title="Pinned search">
          {p}
          <button aria-label={`Unpin ${p}`} onClick={() => unpin(p)}>
            ×
          </button>
        </span>
      ))}
      <input
        ref={ref}
        type="search"
        placeholder={pinned.length ? "and…" : "Search  (/)   e.g. nginx, pid:42, cpu>20"}
        value={query}
        onChange={(e) => setSearch(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter") pin();
          if (e.key === "Escape") {
            setSearch("");
            (e.target as HTMLInputElement).blur();
          }
          if (e.key === "Backspace" && !query && pinned.length) unpin(pinned[pinned.length - 1]);
        }}
        aria-label="Search nodes"
      />
      {matchCount !== null && <span className="match-count">{matchCount} match{matchCount === 1 ? "" : "es"}</span>}
    </div>
  );
});

export default SearchBox;
