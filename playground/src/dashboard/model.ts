// The dashboard's data shapes and the pure functions that merge live updates
// into them. Nothing here touches the DOM or the network, so the rules (no
// duplicate rows after a reconnect, which incidents count as open, how a
// chart is scaled) are unit-tested directly (tests/model.test.mjs).

export type Severity = 'CRITICAL' | 'HIGH' | 'MEDIUM' | 'LOW';
export type IncidentStatus = 'OPEN' | 'INVESTIGATING' | 'RESOLVED' | 'CLOSED';

export interface UserRef {
  id?: string;
  username: string;
}

export interface Incident {
  id: string;
  title: string;
  severity: Severity;
  status: IncidentStatus;
  startedAt: string;
  acknowledgedAt: string | null;
  resolvedAt: string | null;
  assignedTo: UserRef | null;
}

export interface EventRow {
  id: string;
  /** The event's position in commit order, for `events(after:)`. */
  cursor: string;
  /** When the server received it: the commit order, near enough. */
  receivedAt: string;
  timestamp: string;
  eventType: string;
  source: string;
  level: string | null;
  message: string | null;
}

export interface Alert {
  id: string;
  state: string;
  labels: Record<string, string>;
  value: number | null;
  firedAt: string | null;
  silenced: boolean;
  acknowledged: boolean;
  rule: { id: string; name: string; severity: string };
}

export interface MetricName {
  name: string;
  metricType: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY';
}

/**
 * How a metric's samples become chart points: a counter as its per-second
 * rate, a histogram or summary as its 95th percentile, a gauge as its mean.
 */
export function aggregationFor(metricType: MetricName['metricType']): {
  aggregation: 'RATE' | 'P95' | 'AVG';
  label: string;
} {
  switch (metricType) {
    case 'COUNTER':
      return { aggregation: 'RATE', label: 'per-second rate' };
    case 'HISTOGRAM':
    case 'SUMMARY':
      return { aggregation: 'P95', label: '95th percentile' };
    case 'GAUGE':
      return { aggregation: 'AVG', label: 'average' };
  }
}

export interface SeriesPoint {
  timestamp: string;
  value: number;
}

export interface Series {
  labels: Record<string, string>;
  points: SeriesPoint[];
}

/** Severities from the most to the least urgent. */
export const SEVERITIES: Severity[] = ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW'];

/** Statuses an incident can be moved to from the detail panel. */
export const STATUSES: IncidentStatus[] = ['OPEN', 'INVESTIGATING', 'RESOLVED', 'CLOSED'];

/** Event levels, from the least to the most severe. */
export const LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];

/** Whether an incident still needs attention (shown in the open list). */
export function isOpen(incident: Pick<Incident, 'status'>): boolean {
  return incident.status === 'OPEN' || incident.status === 'INVESTIGATING';
}

function bySeverityThenAge(a: Incident, b: Incident): number {
  const s = SEVERITIES.indexOf(a.severity) - SEVERITIES.indexOf(b.severity);
  if (s !== 0) return s;
  return a.startedAt < b.startedAt ? 1 : a.startedAt > b.startedAt ? -1 : a.id.localeCompare(b.id);
}

/**
 * The open-incident list after `incoming` (a fresh page, a created or an
 * updated incident): one row per id, the newest version wins, incidents that
 * are no longer open leave the list.
 */
export function upsertIncidents(list: Incident[], incoming: Incident[]): Incident[] {
  const byId = new Map(list.map((i) => [i.id, i]));
  for (const incident of incoming) {
    if (isOpen(incident)) byId.set(incident.id, incident);
    else byId.delete(incident.id);
  }
  return [...byId.values()].sort(bySeverityThenAge);
}

/** Open incidents grouped by severity, every severity present (maybe empty). */
export function groupBySeverity(list: Incident[]): { severity: Severity; incidents: Incident[] }[] {
  return SEVERITIES.map((severity) => ({
    severity,
    incidents: list.filter((i) => i.severity === severity && isOpen(i)),
  }));
}

/** Compares events in the order of the server's cursors: (timestamp, id). */
export function compareEvents(a: EventRow, b: EventRow): number {
  const ta = Date.parse(a.timestamp);
  const tb = Date.parse(b.timestamp);
  if (ta !== tb) return ta - tb;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * The event tail after `incoming` rows (live ones, or a catch-up page after a
 * reconnect): de-duplicated by id, newest first, at most `cap` rows.
 */
export function mergeEvents(tail: EventRow[], incoming: EventRow[], cap: number): EventRow[] {
  const byId = new Map(tail.map((e) => [e.id, e]));
  for (const event of incoming) byId.set(event.id, event);
  return [...byId.values()].sort((a, b) => compareEvents(b, a)).slice(0, cap);
}

/**
 * The cursor to resume after when only a page of rows is known (no live
 * event received yet): the one of the row received last, since cursors
 * follow commit order, not event timestamps (which clients may back-date).
 */
export function resumeCursor(tail: EventRow[]): string | null {
  let latest: EventRow | null = null;
  for (const event of tail) {
    if (
      !latest ||
      Date.parse(event.receivedAt) > Date.parse(latest.receivedAt) ||
      (event.receivedAt === latest.receivedAt && event.id > latest.id)
    ) {
      latest = event;
    }
  }
  return latest?.cursor ?? null;
}

/** Whether an event passes the tail's filters (as the server filters them). */
export function matchesFilter(event: EventRow, sources: string[], minLevel: string | null): boolean {
  if (sources.length > 0 && !sources.includes(event.source)) return false;
  if (minLevel) {
    if (!event.level) return false;
    if (LEVELS.indexOf(event.level.toUpperCase()) < LEVELS.indexOf(minLevel)) return false;
  }
  return true;
}

/** `"api, web ,,db"` → `["api", "web", "db"]`. */
export function parseSources(text: string): string[] {
  return [...new Set(text.split(',').map((s) => s.trim()).filter((s) => s.length > 0))];
}

/** The key of an alert instance: its rule and its label set. */
export function alertKey(ruleId: string, labels: Record<string, string>): string {
  const sorted = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`);
  return `${ruleId}{${sorted.join(',')}}`;
}

/** `{host="a", env="prod"}` for display. */
export function formatLabels(labels: Record<string, string>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]}"`);
  return parts.length ? `{${parts.join(', ')}}` : '';
}

/** "3 min ago", "2 h ago": how long ago `iso` was, relative to `now`. */
export function timeAgo(iso: string, now: number): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} d ago`;
}

/** A duration in seconds as "1 h 5 min", "42 s". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** A chart's drawable geometry: one SVG path per series, and axis ticks. */
export interface ChartGeometry {
  paths: {
    key: string;
    d: string;
    labels: Record<string, string>;
    /** The newest value, and where it is drawn (marked with a dot). */
    last: number | null;
    lastAt: { x: number; y: number } | null;
  }[];
  yTicks: { y: number; label: string }[];
  xTicks: { x: number; label: string }[];
  empty: boolean;
}

function niceStep(range: number, count: number): number {
  const raw = range / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const residual = raw / magnitude;
  const nice = residual > 5 ? 10 : residual > 2 ? 5 : residual > 1 ? 2 : 1;
  return nice * magnitude;
}

function formatNumber(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 1e9) return `${+(value / 1e9).toFixed(1)}G`;
  if (abs >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (abs >= 1e4) return `${+(value / 1e3).toFixed(1)}k`;
  if (abs >= 100 || value === Math.round(value)) return `${Math.round(value * 100) / 100}`;
  return `${+value.toPrecision(3)}`;
}

/**
 * Scales series into a `width`×`height` plot covering [`from`, `to`] (ms):
 * the y axis starts at zero for non-negative data and gets round ticks; a
 * gap in the data breaks the line rather than bridging it.
 */
export function chartGeometry(
  series: Series[],
  from: number,
  to: number,
  width: number,
  height: number,
  stepMs: number,
): ChartGeometry {
  const values = series.flatMap((s) => s.points.map((p) => p.value)).filter(Number.isFinite);
  const empty = values.length === 0;
  let lo = empty ? 0 : Math.min(...values);
  let hi = empty ? 1 : Math.max(...values);
  if (lo >= 0) lo = 0;
  if (hi === lo) hi = lo + 1;
  const step = niceStep(hi - lo, 4);
  lo = Math.floor(lo / step) * step;
  hi = Math.ceil(hi / step) * step;
  const x = (t: number) => ((t - from) / (to - from)) * width;
  const y = (v: number) => height - ((v - lo) / (hi - lo)) * height;
  const yTicks = [];
  for (let v = lo; v <= hi + step / 2; v += step) {
    yTicks.push({ y: +y(v).toFixed(1), label: formatNumber(+v.toPrecision(12)) });
  }
  const xTicks = [];
  const tickEvery = 15 * 60 * 1000;
  for (let t = Math.ceil(from / tickEvery) * tickEvery; t <= to; t += tickEvery) {
    const d = new Date(t);
    const label = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
    xTicks.push({ x: +x(t).toFixed(1), label });
  }
  const paths = series.map((s) => {
    const points = s.points
      .map((p) => ({ t: Date.parse(p.timestamp), v: p.value }))
      .filter((p) => Number.isFinite(p.v) && p.t >= from && p.t <= to)
      .sort((a, b) => a.t - b.t);
    // Segments of points no more than 1.5 steps apart; a lone point becomes
    // a zero-length line, which the round line cap draws as a dot.
    const segments: string[][] = [];
    let previous: number | null = null;
    for (const p of points) {
      const xy = `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
      if (previous === null || p.t - previous > stepMs * 1.5) segments.push([xy]);
      else segments[segments.length - 1].push(xy);
      previous = p.t;
    }
    const d = segments
      .map((seg) => `M${seg[0]}${seg.length === 1 ? 'h0' : seg.slice(1).map((xy) => `L${xy}`).join('')}`)
      .join('');
    return {
      key: formatLabels(s.labels) || '(no labels)',
      d,
      labels: s.labels,
      last: points.length ? points[points.length - 1].v : null,
      lastAt: points.length
        ? {
            x: +x(points[points.length - 1].t).toFixed(1),
            y: +y(points[points.length - 1].v).toFixed(1),
          }
        : null,
    };
  });
  return { paths, yTicks, xTicks, empty };
}
