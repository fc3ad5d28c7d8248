// In-tab history of polled values, so the pages can draw "over time" without a server-side
// series: each key keeps its last MAX samples, one per distinct report time.

const MAX = 60;
const series = new Map();

/** remember appends value (reported at time at) to key's series unless at was already seen, and returns the values. */
export function remember(key, at, value) {
  let s = series.get(key);
  if (!s) { s = []; series.set(key, s); }
  if (Number.isFinite(value) && (!s.length || s[s.length - 1].at !== at)) {
    s.push({ at, value });
    if (s.length > MAX) s.shift();
  }
  return s.map((p) => p.value);
}
