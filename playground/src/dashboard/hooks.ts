// Data hooks of the dashboard panels. Each one loads its data once, then
// follows a subscription (no polling), and reloads or catches up when the
// live connection comes back after a loss.
import { useCallback, useEffect, useRef, useState } from 'react';

import { Api, ApiError, type LinkState } from './api';
import {
  type Alert,
  type EventRow,
  type Incident,
  type MetricName,
  type Series,
  aggregationFor,
  mergeEvents,
  resumeCursor,
  upsertIncidents,
} from './model';
import * as ops from './operations';

/** Most rows the event tail keeps. */
export const TAIL_CAP = 300;

/** The state of the live connection, as it changes. */
export function useLinkState(api: Api): LinkState {
  const [state, setState] = useState<LinkState>(api.linkState());
  useEffect(() => api.onLinkState(setState), [api]);
  return state;
}

/** A clock that ticks every `ms`, for "3 min ago" labels. */
export function useNow(ms: number): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Most incidents followed live at once: `incidentUpdated` takes one id, and a
 * WebSocket connection runs at most 200 operations.
 */
export const LIVE_INCIDENTS_CAP = 180;

/**
 * Open incidents, live: `incidentCreated` adds them, one `incidentUpdated(id)`
 * per listed incident follows each (a resolved one leaves the list). The list
 * is re-read after new incidents are followed (so a change made between an
 * incident's creation and its subscription is not lost) and after a
 * reconnect; changes that arrive live while a re-read is in flight win over
 * its older snapshot.
 */
export function useOpenIncidents(api: Api) {
  const [incidents, setIncidents] = useState<Incident[]>([]);
  // Open incidents beyond the page read (only when there are more than 200).
  const [more, setMore] = useState(0);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const live = useRef(new Map<string, Incident>());
  const followed = useRef(new Map<string, () => void>());
  const inFlight = useRef(false);
  const again = useRef(false);

  const apply = useCallback((incident: Incident) => {
    live.current.set(incident.id, incident);
    setIncidents((list) => upsertIncidents(list, [incident]));
  }, []);

  const forget = useCallback((id: string) => {
    live.current.delete(id);
    setIncidents((list) => list.filter((i) => i.id !== id));
  }, []);

  const reload = useCallback(async () => {
    if (inFlight.current) {
      again.current = true;
      return;
    }
    inFlight.current = true;
    try {
      do {
        again.current = false;
        live.current.clear();
        try {
          const data = await api.request<{ incidents: { totalCount: number; nodes: Incident[] } }>(
            ops.OPEN_INCIDENTS,
          );
          // A fresh page replaces the list (incidents resolved while we were
          // away leave it), then what arrived live meanwhile is applied on top.
          const fresh = upsertIncidents([], data.incidents.nodes);
          setIncidents(upsertIncidents(fresh, [...live.current.values()]));
          setMore(Math.max(0, data.incidents.totalCount - data.incidents.nodes.length));
          setLoaded(true);
          setError(null);
        } catch (e) {
          setError(message(e));
        }
      } while (again.current);
    } finally {
      inFlight.current = false;
    }
  }, [api]);

  useEffect(() => {
    const stopCreated = api.subscribe<{ incidentCreated: Incident }>(ops.INCIDENT_CREATED, {}, {
      next: (d) => apply(d.incidentCreated),
      error: (e) => setError(e.message),
    });
    void reload();
    const stopResume = api.onResume(() => void reload());
    const subs = followed.current;
    return () => {
      stopCreated();
      stopResume();
      for (const stop of subs.values()) stop();
      subs.clear();
    };
  }, [api, reload, apply]);

  // One incidentUpdated per listed incident, started and stopped as the list changes.
  useEffect(() => {
    const want = new Set(incidents.slice(0, LIVE_INCIDENTS_CAP).map((i) => i.id));
    for (const [id, stop] of followed.current) {
      if (!want.has(id)) {
        stop();
        followed.current.delete(id);
      }
    }
    let added = false;
    for (const id of want) {
      if (followed.current.has(id)) continue;
      added = true;
      const stop = api.subscribe<{ incidentUpdated: { incident: Incident } }>(
        ops.INCIDENT_UPDATED,
        { id },
        {
          next: (d) => apply(d.incidentUpdated.incident),
          error: (e) => {
            // No longer visible to us (e.g. reassigned away): drop it.
            if (e.code === 'NOT_FOUND') forget(id);
            else setError(e.message);
          },
        },
      );
      followed.current.set(id, stop);
    }
    if (added && loaded) void reload();
  }, [api, incidents, loaded, apply, forget, reload]);

  return { incidents, more, loaded, error };
}

/** Firing alerts: reloaded whenever an alert changes state. */
export function useFiringAlerts(api: Api) {
  const [alerts, setAlerts] = useState<Alert[]>([]);
  const [error, setError] = useState<string | null>(null);
  const inFlight = useRef<Promise<void> | null>(null);
  const again = useRef(false);

  const reload = useCallback(async () => {
    // Transitions come in bursts: one request at a time, plus one more if
    // anything changed while it ran.
    if (inFlight.current) {
      again.current = true;
      return;
    }
    const run = async () => {
      do {
        again.current = false;
        try {
          const data = await api.request<{ alerts: Alert[] }>(ops.FIRING_ALERTS);
          setAlerts(data.alerts);
          setError(null);
        } catch (e) {
          setError(message(e));
        }
      } while (again.current);
    };
    inFlight.current = run().finally(() => {
      inFlight.current = null;
    });
  }, [api]);

  useEffect(() => {
    const stop = api.subscribe(ops.ALERT_STATE_CHANGED, {}, {
      next: () => void reload(),
      error: (e) => setError(e.message),
    });
    void reload();
    const stopResume = api.onResume(() => void reload());
    return () => {
      stop();
      stopResume();
    };
  }, [api, reload]);

  return { alerts, error };
}

interface EventPage {
  nodes: EventRow[];
  pageInfo?: { hasNextPage: boolean; endCursor: string | null };
}

/** Most catch-up pages read after a reconnect (500 events each). */
const CATCH_UP_PAGES = 20;

/**
 * The live event tail for a filter. Every event carries its cursor (its
 * place in commit order); the tail remembers the last one it has seen. After
 * a reconnect it reads what it missed with `events(after: <that cursor>)`,
 * then again once the re-established subscription delivers its first event
 * (which closes the window between the catch-up query and the subscription
 * starting). Rows are de-duplicated by id, so overlaps are harmless.
 */
export function useEventTail(api: Api, sources: string[], minLevel: string | null) {
  const [events, setEvents] = useState<EventRow[]>([]);
  const [error, setError] = useState<string | null>(null);
  const key = JSON.stringify([sources, minLevel]);

  useEffect(() => {
    const filter: Record<string, unknown> = {};
    if (sources.length) filter.sources = sources;
    if (minLevel) filter.minLevel = minLevel;
    let active = true;
    let catchUpOnNext = false;
    let tail: EventRow[] = [];
    // The cursor of the last event seen in commit order: from the
    // subscription (which delivers in commit order) or a catch-up page.
    let seen: string | null = null;
    setEvents([]);

    const merge = (incoming: EventRow[]) => {
      if (!active) return;
      tail = mergeEvents(tail, incoming, TAIL_CAP);
      setEvents(tail);
    };

    const catchUp = async () => {
      let after = seen ?? resumeCursor(tail);
      if (!after) return;
      for (let page = 0; page < CATCH_UP_PAGES && active; page += 1) {
        const data: { events: EventPage } = await api.request(ops.EVENTS_AFTER, {
          filter,
          after,
          first: 500,
        });
        merge(data.events.nodes);
        const last = data.events.nodes.at(-1);
        if (last) seen = last.cursor;
        const info: EventPage['pageInfo'] = data.events.pageInfo;
        if (!info?.hasNextPage || !info.endCursor) return;
        after = info.endCursor;
      }
    };

    const stop = api.subscribe<{ eventCreated: EventRow }>(ops.EVENT_CREATED, { filter }, {
      next: (d) => {
        const resumeFrom = seen ?? resumeCursor(tail);
        merge([d.eventCreated]);
        if (catchUpOnNext) {
          catchUpOnNext = false;
          seen = resumeFrom;
          // Re-read from before the gap; the catch-up moves `seen` on.
          catchUp().catch((e) => setError(message(e)));
        } else {
          seen = d.eventCreated.cursor;
        }
      },
      error: (e: ApiError) => {
        // The server skipped items (this client lagged): read them back.
        setError(e.message);
        catchUp().catch((err) => setError(message(err)));
      },
    });

    api
      .request<{ events: EventPage }>(ops.RECENT_EVENTS, { filter, last: 100 })
      .then((data) => {
        merge(data.events.nodes);
        setError(null);
      })
      .catch((e) => setError(message(e)));

    const stopResume = api.onResume(() => {
      catchUpOnNext = true;
      catchUp()
        .then(() => setError(null))
        .catch((e) => setError(message(e)));
    });

    return () => {
      active = false;
      stop();
      stopResume();
    };
    // `key` stands for the filter's contents (arrays compare by identity).
  }, [api, key]);

  return { events, error };
}

/** Metric names, for the chart's picker. */
export function useMetricNames(api: Api) {
  const [names, setNames] = useState<MetricName[]>([]);
  const [error, setError] = useState<string | null>(null);
  const reload = useCallback(async () => {
    try {
      const data = await api.request<{ metricNames: MetricName[] }>(ops.METRIC_NAMES);
      setNames(data.metricNames);
      setError(null);
    } catch (e) {
      setError(message(e));
    }
  }, [api]);
  useEffect(() => {
    void reload();
    return api.onResume(() => void reload());
  }, [api, reload]);
  return { names, error, reload };
}

/** Length of the chart's window. */
export const WINDOW_MS = 60 * 60 * 1000;
/** The chart's bucket width, in seconds. */
export const STEP_SECONDS = 60;
/** How often the chart's window slides forward and is re-read. */
export const CHART_REFRESH_MS = 15_000;

/**
 * `metricSeries` of one metric over the last hour, re-read as the window
 * slides (metric samples have no subscription of their own).
 */
export function useMetricSeries(api: Api, metric: MetricName | null) {
  const [series, setSeries] = useState<Series[]>([]);
  const [range, setRange] = useState<{ from: number; to: number }>(() => {
    const to = Date.now();
    return { from: to - WINDOW_MS, to };
  });
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    if (!metric) {
      setSeries([]);
      return;
    }
    const { name } = metric;
    const aggregation = aggregationFor(metric.metricType).aggregation;
    let active = true;
    const load = async () => {
      const to = Date.now();
      const from = to - WINDOW_MS;
      try {
        const data = await api.request<{ metricSeries: Series[] }>(ops.METRIC_SERIES, {
          name,
          from: new Date(from).toISOString(),
          to: new Date(to).toISOString(),
          step: STEP_SECONDS,
          aggregation,
        });
        if (!active) return;
        setSeries(data.metricSeries);
        setRange({ from, to });
        setError(null);
      } catch (e) {
        if (active) setError(message(e));
      }
    };
    void load();
    const timer = setInterval(() => void load(), CHART_REFRESH_MS);
    const stopResume = api.onResume(() => void load());
    return () => {
      active = false;
      clearInterval(timer);
      stopResume();
    };
  }, [api, metric?.name, metric?.metricType]);

  return { series, range, error };
}
