// The detail panel of one incident: its facts, the actions an operator takes
// (acknowledge, change status, resolve with a root cause, add a note), its
// timeline and the suggested root causes. It follows `incidentUpdated(id)`
// and re-reads itself on every change.
import { type FormEvent, useCallback, useEffect, useState } from 'react';

import type { Api } from './api';
import { useNow } from './hooks';
import { type Incident, type IncidentStatus, STATUSES, formatDuration, formatLabels, timeAgo } from './model';
import * as ops from './operations';

interface Note {
  id: string;
  body: string;
  createdAt: string;
  author: { username: string } | null;
}

interface TimelineEntry {
  at: string;
  kind: string;
  reason: string;
  summary: string;
  actor: { username: string } | null;
}

interface Analysis {
  computedAt: string;
  windowStart: string;
  windowEnd: string;
  suspects: {
    rank: number;
    source: string;
    windowErrors: number;
    baselineErrors: number;
    windowRatePerMinute: number;
    baselineRatePerMinute: number;
    score: number;
    firstError: { eventId: string; at: string; level: string; message: string | null } | null;
  }[];
  alerts: { ruleName: string; labels: Record<string, string>; value: number | null; at: string }[];
  metrics: {
    rank: number;
    name: string;
    labels: Record<string, string>;
    windowMean: number;
    baselineMean: number;
    zScore: number;
  }[];
}

interface Detail extends Incident {
  description: string | null;
  closedAt: string | null;
  rootCause: string | null;
  sources: string[];
  timeToAcknowledge: number | null;
  timeToResolve: number | null;
  createdBy: { username: string } | null;
  alerts: { id: string; state: string; firedAt: string | null; rule: { name: string } }[];
  notes: { totalCount: number; nodes: Note[] };
  timeline: { totalCount: number; windowStart: string; nodes: TimelineEntry[] };
  analysis: Analysis | null;
}

function fmt(iso: string | null): string {
  return iso ? new Date(iso).toLocaleString() : '—';
}

export function IncidentDetail({ api, id, onClose }: { api: Api; id: string; onClose: () => void }) {
  const [detail, setDetail] = useState<Detail | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [status, setStatus] = useState<IncidentStatus>('INVESTIGATING');
  const [rootCause, setRootCause] = useState('');
  const [note, setNote] = useState('');
  const now = useNow(30_000);

  const reload = useCallback(async () => {
    try {
      const data = await api.request<{ incident: Detail }>(ops.INCIDENT_DETAIL, { id });
      setDetail((previous) => {
        // The status picker starts at the status the incident has, and
        // follows it when it changes.
        if (!previous || previous.status !== data.incident.status) setStatus(data.incident.status);
        return data.incident;
      });
      setError(null);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  }, [api, id]);

  useEffect(() => {
    setDetail(null);
    void reload();
    const stop = api.subscribe(ops.INCIDENT_UPDATED, { id }, {
      next: () => void reload(),
      error: (e) => setError(e.message),
    });
    const stopResume = api.onResume(() => void reload());
    return () => {
      stop();
      stopResume();
    };
  }, [api, id, reload]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') onClose();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [onClose]);

  const act = async (run: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await run();
      await reload();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  const analyze = () => act(() => api.request(ops.ANALYZE_INCIDENT, { input: { id } }));
  const acknowledge = () => act(() => api.request(ops.ACKNOWLEDGE_INCIDENT, { input: { id } }));
  const changeStatus = (e: FormEvent) => {
    e.preventDefault();
    void act(() => api.request(ops.UPDATE_INCIDENT_STATUS, { input: { id, status } }));
  };
  const resolve = (e: FormEvent) => {
    e.preventDefault();
    const input: Record<string, unknown> = { id };
    if (rootCause.trim()) input.rootCause = rootCause.trim();
    void act(async () => {
      await api.request(ops.RESOLVE_INCIDENT, { input });
      setRootCause('');
    });
  };
  const addNote = (e: FormEvent) => {
    e.preventDefault();
    if (!note.trim()) return;
    void act(async () => {
      await api.request(ops.ADD_NOTE, { input: { incidentId: id, body: note.trim() } });
      setNote('');
    });
  };

  return (
    <div className="drawer-backdrop" onClick={onClose}>
      <aside
        className="drawer"
        role="dialog"
        aria-label="Incident"
        onClick={(e) => e.stopPropagation()}
        data-testid="incident-detail"
      >
        <div className="drawer-head">
          <h2>{detail ? detail.title : 'Incident'}</h2>
          <button type="button" onClick={onClose} aria-label="Close">
            ✕
          </button>
        </div>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        {!detail && !error && <p className="muted">Loading…</p>}
        {detail && (
          <>
            <div className="facts">
              <span className={`sev sev-${detail.severity.toLowerCase()}`}>{detail.severity.toLowerCase()}</span>
              <span className={`status status-${detail.status.toLowerCase()}`} data-testid="incident-status">
                {detail.status.toLowerCase()}
              </span>
              <span>started {timeAgo(detail.startedAt, now)}</span>
              {detail.assignedTo && <span>assigned to {detail.assignedTo.username}</span>}
              {detail.createdBy && <span>opened by {detail.createdBy.username}</span>}
            </div>
            {detail.description && <p className="description">{detail.description}</p>}
            <dl className="times">
              <dt>Started</dt>
              <dd>{fmt(detail.startedAt)}</dd>
              <dt>Acknowledged</dt>
              <dd>
                {fmt(detail.acknowledgedAt)}
                {detail.timeToAcknowledge !== null && ` (after ${formatDuration(detail.timeToAcknowledge)})`}
              </dd>
              <dt>Resolved</dt>
              <dd>
                {fmt(detail.resolvedAt)}
                {detail.timeToResolve !== null && ` (after ${formatDuration(detail.timeToResolve)})`}
              </dd>
              {detail.closedAt && (
                <>
                  <dt>Closed</dt>
                  <dd>{fmt(detail.closedAt)}</dd>
                </>
              )}
              {detail.rootCause && (
                <>
                  <dt>Root cause</dt>
                  <dd>{detail.rootCause}</dd>
                </>
              )}
              {detail.alerts.length > 0 && (
                <>
                  <dt>Alerts</dt>
                  <dd>{detail.alerts.map((a) => a.rule.name).join(', ')}</dd>
                </>
              )}
              {detail.sources.length > 0 && (
                <>
                  <dt>Sources</dt>
                  <dd>{detail.sources.join(', ')}</dd>
                </>
              )}
            </dl>

            <div className="actions">
              <button type="button" onClick={acknowledge} disabled={busy || detail.acknowledgedAt !== null}>
                {detail.acknowledgedAt ? 'Acknowledged' : 'Acknowledge'}
              </button>
              <form onSubmit={changeStatus} className="inline">
                <label>
                  Status{' '}
                  <select
                    name="status"
                    value={status}
                    onChange={(e) => setStatus(e.target.value as IncidentStatus)}
                  >
                    {STATUSES.map((s) => (
                      <option key={s} value={s}>
                        {s.toLowerCase()}
                      </option>
                    ))}
                  </select>
                </label>
                <button type="submit" disabled={busy}>
                  Set status
                </button>
              </form>
              <form onSubmit={resolve} className="inline">
                <input
                  name="rootCause"
                  placeholder="Root cause (optional)"
                  value={rootCause}
                  onChange={(e) => setRootCause(e.target.value)}
                />
                <button type="submit" className="primary" disabled={busy || detail.status === 'RESOLVED' || detail.status === 'CLOSED'}>
                  Resolve
                </button>
              </form>
            </div>

            <h3>Notes</h3>
            {detail.notes.nodes.length === 0 && <p className="muted">No notes yet.</p>}
            <ul className="notes">
              {detail.notes.nodes.map((n) => (
                <li key={n.id}>
                  <div className="meta">
                    {n.author?.username ?? 'someone'} · {fmt(n.createdAt)}
                  </div>
                  <div className="body">{n.body}</div>
                </li>
              ))}
            </ul>
            <form onSubmit={addNote} className="note-form">
              <textarea
                name="note"
                rows={2}
                placeholder="Add a note for the team"
                value={note}
                onChange={(e) => setNote(e.target.value)}
              />
              <button type="submit" disabled={busy || !note.trim()}>
                Add note
              </button>
            </form>

            <h3>
              Suggested root causes{' '}
              <button type="button" className="small-button" onClick={analyze} disabled={busy}>
                {detail.analysis ? 'Analyse again' : 'Analyse'}
              </button>
            </h3>
            <AnalysisView analysis={detail.analysis} />

            <h3>
              Timeline <span className="count">{detail.timeline.totalCount}</span>
            </h3>
            <p className="muted small">Since {fmt(detail.timeline.windowStart)} (an hour before it started).</p>
            {detail.timeline.nodes.length === 0 && <p className="muted">Nothing in the window yet.</p>}
            <ol className="timeline">
              {detail.timeline.nodes.map((entry, i) => (
                <li key={`${entry.at}-${i}`} className={`kind-${entry.kind.toLowerCase()}`}>
                  <span className="time">{new Date(entry.at).toLocaleTimeString()}</span>
                  <span className="kind">{entry.kind.toLowerCase()}</span>
                  <span className="summary">
                    {entry.summary}
                    {entry.actor && <span className="muted"> · {entry.actor.username}</span>}
                  </span>
                  <span className="reason muted">{entry.reason}</span>
                </li>
              ))}
            </ol>
          </>
        )}
      </aside>
    </div>
  );
}

function AnalysisView({ analysis }: { analysis: Analysis | null }) {
  if (!analysis) return <p className="muted">Not analysed yet.</p>;
  const nothing =
    analysis.suspects.length === 0 && analysis.alerts.length === 0 && analysis.metrics.length === 0;
  return (
    <div className="analysis">
      <p className="muted small">
        Computed {fmt(analysis.computedAt)} over {fmt(analysis.windowStart)} – {fmt(analysis.windowEnd)},
        against the period of equal length before it.
      </p>
      {nothing && <p className="muted">Nothing stood out.</p>}
      {analysis.suspects.length > 0 && (
        <ol>
          {analysis.suspects.map((s) => (
            <li key={s.source}>
              <strong>{s.source}</strong>: {s.baselineRatePerMinute.toFixed(2)} →{' '}
              {s.windowRatePerMinute.toFixed(2)} errors/min ({s.baselineErrors} → {s.windowErrors} errors)
              {s.firstError && (
                <div className="muted small">
                  first {s.firstError.level.toLowerCase()} at {new Date(s.firstError.at).toLocaleTimeString()}:{' '}
                  {s.firstError.message ?? '(no message)'}
                </div>
              )}
            </li>
          ))}
        </ol>
      )}
      {analysis.alerts.length > 0 && (
        <ul>
          {analysis.alerts.map((a, i) => (
            <li key={i}>
              alert <strong>{a.ruleName}</strong> {formatLabels(a.labels)} fired {fmt(a.at)}
              {a.value !== null && ` (value ${a.value})`}
            </li>
          ))}
        </ul>
      )}
      {analysis.metrics.length > 0 && (
        <ul>
          {analysis.metrics.map((m) => (
            <li key={`${m.rank}`}>
              <code>
                {m.name}
                {formatLabels(m.labels)}
              </code>{' '}
              mean {m.baselineMean.toPrecision(3)} → {m.windowMean.toPrecision(3)} (z = {m.zScore.toFixed(1)})
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
