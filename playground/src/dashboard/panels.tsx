// The four panels of the dashboard: open incidents by severity, firing
// alerts, a metric's last hour, and the live event tail.
import { type FormEvent, useEffect, useMemo, useState } from 'react';

import type { Api } from './api';
import {
  STEP_SECONDS,
  useEventTail,
  useFiringAlerts,
  useMetricNames,
  useMetricSeries,
  useNow,
  useOpenIncidents,
} from './hooks';
import {
  LEVELS,
  aggregationFor,
  chartGeometry,
  formatLabels,
  groupBySeverity,
  parseSources,
  timeAgo,
} from './model';

function PanelError({ error }: { error: string | null }) {
  if (!error) return null;
  return (
    <p className="error" role="alert">
      {error}
    </p>
  );
}

export function IncidentsPanel({
  api,
  selected,
  onSelect,
}: {
  api: Api;
  selected: string | null;
  onSelect: (id: string) => void;
}) {
  const { incidents, more, loaded, error } = useOpenIncidents(api);
  const now = useNow(30_000);
  const groups = groupBySeverity(incidents);

  return (
    <section className="panel incidents" aria-labelledby="incidents-title">
      <h2 id="incidents-title">
        Open incidents <span className="count">{incidents.length + more}</span>
      </h2>
      <PanelError error={error} />
      {loaded && incidents.length === 0 && <p className="muted">No open incidents.</p>}
      {more > 0 && (
        <p className="muted small">
          Showing the {incidents.length} most recent; {more} older open incidents are not listed.
        </p>
      )}
      <div className="severity-groups">
        {groups
          .filter((g) => g.incidents.length > 0)
          .map((group) => (
            <div key={group.severity} className="severity-group" data-severity={group.severity}>
              <h3>
                <span className={`sev sev-${group.severity.toLowerCase()}`}>{group.severity.toLowerCase()}</span>
                <span className="count">{group.incidents.length}</span>
              </h3>
              <ul>
                {group.incidents.map((incident) => (
                  <li key={incident.id}>
                    <button
                      type="button"
                      className={`incident-row${selected === incident.id ? ' selected' : ''}`}
                      data-incident-id={incident.id}
                      onClick={() => onSelect(incident.id)}
                    >
                      <span className="title">{incident.title}</span>
                      <span className="meta">
                        <span className={`status status-${incident.status.toLowerCase()}`}>
                          {incident.status.toLowerCase()}
                        </span>
                        {incident.acknowledgedAt && <span className="ack">acknowledged</span>}
                        <span>{timeAgo(incident.startedAt, now)}</span>
                        {incident.assignedTo && <span>→ {incident.assignedTo.username}</span>}
                      </span>
                    </button>
                  </li>
                ))}
              </ul>
            </div>
          ))}
      </div>
    </section>
  );
}

export function AlertsPanel({ api }: { api: Api }) {
  const { alerts, error } = useFiringAlerts(api);
  const now = useNow(30_000);
  return (
    <section className="panel alerts" aria-labelledby="alerts-title">
      <h2 id="alerts-title">
        Firing alerts <span className="count">{alerts.length}</span>
      </h2>
      <PanelError error={error} />
      {alerts.length === 0 ? (
        <p className="muted">Nothing is firing.</p>
      ) : (
        <ul className="alert-list">
          {alerts.map((alert) => (
            <li key={alert.id} className={alert.silenced ? 'silenced' : ''}>
              <span className={`sev sev-${alert.rule.severity.toLowerCase()}`}>
                {alert.rule.severity.toLowerCase()}
              </span>
              <span className="title">{alert.rule.name}</span>
              <code className="labels">{formatLabels(alert.labels)}</code>
              <span className="meta">
                {alert.value !== null && <span>value {alert.value}</span>}
                {alert.firedAt && <span>since {timeAgo(alert.firedAt, now)}</span>}
                {alert.silenced && <span>silenced</span>}
                {alert.acknowledged && <span>acknowledged</span>}
              </span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

const COLORS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#be185d', '#4b5563'];
const CHART_W = 600;
const CHART_H = 200;

export function MetricPanel({ api }: { api: Api }) {
  const { names, error: namesError, reload } = useMetricNames(api);
  const [name, setName] = useState<string | null>(null);
  const metric = names.find((n) => n.name === name) ?? null;
  const { series, range, error } = useMetricSeries(api, metric);

  useEffect(() => {
    if (name === null && names.length > 0) setName(names[0].name);
  }, [name, names]);

  const geometry = useMemo(
    () => chartGeometry(series, range.from, range.to, CHART_W, CHART_H, STEP_SECONDS * 1000),
    [series, range],
  );
  const shown = geometry.paths.slice(0, COLORS.length);

  return (
    <section className="panel metric" aria-labelledby="metric-title">
      <h2 id="metric-title">Metric, last hour</h2>
      <div className="toolbar">
        <label>
          Metric{' '}
          <select
            value={name ?? ''}
            onChange={(e) => setName(e.target.value || null)}
            onFocus={() => void reload()}
          >
            {names.length === 0 && <option value="">no metrics yet</option>}
            {names.map((n) => (
              <option key={n.name} value={n.name}>
                {n.name}
              </option>
            ))}
          </select>
        </label>
        {metric && (
          <span className="muted small">
            {metric.metricType.toLowerCase()}, {aggregationFor(metric.metricType).label} per{' '}
            {STEP_SECONDS / 60} min
          </span>
        )}
      </div>
      <PanelError error={namesError ?? error} />
      <svg
        className="chart"
        viewBox={`-44 -8 ${CHART_W + 64} ${CHART_H + 28}`}
        role="img"
        aria-label={name ? `${name} over the last hour` : 'no metric chosen'}
      >
        {geometry.yTicks.map((t) => (
          <g key={`y${t.y}`}>
            <line x1={0} x2={CHART_W} y1={t.y} y2={t.y} className="grid-line" />
            <text x={-6} y={t.y + 4} className="tick" textAnchor="end">
              {t.label}
            </text>
          </g>
        ))}
        {geometry.xTicks.map((t) => (
          <text key={`x${t.x}`} x={t.x} y={CHART_H + 16} className="tick" textAnchor="middle">
            {t.label}
          </text>
        ))}
        {shown.map((p, i) => (
          <g key={p.key}>
            <path d={p.d} stroke={COLORS[i]} className="series" />
            {p.lastAt && <circle cx={p.lastAt.x} cy={p.lastAt.y} r={3.5} fill={COLORS[i]} />}
          </g>
        ))}
        {geometry.empty && (
          <text x={CHART_W / 2} y={CHART_H / 2} className="tick" textAnchor="middle">
            {name ? 'no samples in the last hour' : 'no metric to show'}
          </text>
        )}
      </svg>
      {shown.length > 0 && (
        <ul className="legend">
          {shown.map((p, i) => (
            <li key={p.key}>
              <span className="swatch" style={{ background: COLORS[i] }} />
              <code>{p.key}</code>
              {p.last !== null && <span className="muted"> {p.last}</span>}
            </li>
          ))}
          {geometry.paths.length > shown.length && (
            <li className="muted">and {geometry.paths.length - shown.length} more series</li>
          )}
        </ul>
      )}
    </section>
  );
}

export function EventTailPanel({ api }: { api: Api }) {
  const [sourceText, setSourceText] = useState('');
  const [minLevel, setMinLevel] = useState<string>('');
  const [applied, setApplied] = useState<{ sources: string[]; minLevel: string | null }>({
    sources: [],
    minLevel: null,
  });
  const { events, error } = useEventTail(api, applied.sources, applied.minLevel);

  const apply = (e: FormEvent) => {
    e.preventDefault();
    setApplied({ sources: parseSources(sourceText), minLevel: minLevel || null });
  };

  return (
    <section className="panel events" aria-labelledby="events-title">
      <h2 id="events-title">Live events</h2>
      <form className="toolbar" onSubmit={apply}>
        <label>
          Sources{' '}
          <input
            name="sources"
            placeholder="all (or: api, web)"
            value={sourceText}
            onChange={(e) => setSourceText(e.target.value)}
          />
        </label>
        <label>
          Level{' '}
          <select
            name="level"
            value={minLevel}
            onChange={(e) => {
              setMinLevel(e.target.value);
              setApplied({ sources: parseSources(sourceText), minLevel: e.target.value || null });
            }}
          >
            <option value="">any</option>
            {LEVELS.map((l) => (
              <option key={l} value={l}>
                {l.toLowerCase()} and above
              </option>
            ))}
          </select>
        </label>
        <button type="submit">Filter</button>
      </form>
      <PanelError error={error} />
      <div className="table-wrap">
        <table className="event-table">
          <thead>
            <tr>
              <th>Time</th>
              <th>Level</th>
              <th>Source</th>
              <th>Message</th>
            </tr>
          </thead>
          <tbody>
            {events.map((event) => (
              <tr key={event.id} data-event-id={event.id}>
                <td className="time">{new Date(event.timestamp).toLocaleTimeString()}</td>
                <td>
                  <span className={`level level-${(event.level ?? 'none').toLowerCase()}`}>
                    {(event.level ?? event.eventType).toLowerCase()}
                  </span>
                </td>
                <td className="source">{event.source}</td>
                <td className="message">{event.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {events.length === 0 && <p className="muted">No events yet.</p>}
      </div>
    </section>
  );
}
