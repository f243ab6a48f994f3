// Data hooks of the dashboard panels. Each one loads its data once, then
// follows a subscription (no polling), and reloads or catches up when the
// live connection comes back after a loss.
import { useCallback, useEffect, useRef, useState } from 'react';

import { Api, ApiError, type LinkState } from './api';
import {
  type Alert,
  type EventRow,
  type Incident,
  type Series,
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

/** Open incidents, live. */
export function useOpenIncidents(api: Api) {
  const [incidents, setIncidents] = useState<Incident[]>([]);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const reload = useCallback(async () => {
    try {
      const data = await api.request<{ incidents: { nodes: Incident[] } }>(ops.OPEN_INCIDENTS);
      // A fresh page replaces the list: incidents resolved while we were
      // away must leave it too.
      setIncidents(upsertIncidents([], data.incidents.nodes));
      setLoaded(true);
      setError(null);
    } catch (e) {
      setError(message(e));
    }
  }, [api]);

  useEffect(() => {
    const stopCreated = api.subscribe<{ incidentCreated: Incident }>(ops.INCIDENT_CREATED, {}, {
      next: (d) => setIncidents((list) => upsertIncidents(list, [d.incidentCreated])),
      error: (e) => setError(e.message),
    });
    const stopUpdated = api.subscribe<{ incidentUpdated: { incident: Incident } }>(
      ops.INCIDENT_UPDATED,
      {},
      {
        next: (d) => setIncidents((list) => upsertIncidents(list, [d.incidentUpdated.incident])),
        error: (e) => setError(e.message),
      },
    );
    void reload();
    const stopResume = api.onResume(() => void reload());
    return () => {
      stopCreated();
      stopUpdated();
      stopResume();
    };
  }, [api, reload]);

  return { incidents, loaded, error, apply: (i: Incident) => setIncidents((l) => upsertIncidents(l, [i])) };
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

interface EventEdges {
  edges: { cursor: string; node: Omit<EventRow, 'cursor'> }[];
  pageInfo?: { hasNextPage: boolean; endCursor: string | null };
}

function rows(connection: EventEdges): EventRow[] {
  return connection.edges.map((e) => ({ ...e.node, cursor: e.cursor }));
}

/** Most catch-up pages read after a reconnect (500 events each). */
const CATCH_UP_PAGES = 20;

/**
 * The live event tail for a filter. After a reconnect it reads what it missed
 * with `events(after: <cursor of the newest row>)`, then again once the
 * re-established subscription delivers its first event (which closes the
 * window between the catch-up query and the subscription starting); rows are
 * de-duplicated by id, so overlaps are harmless.
 */
export function useEventTail(api: Api, sources: string[], minLevel: string | null) {
  const [events, setEvents] = useState<EventRow[]>([]);
  const [error, setError] = useState<string | null>(null);
  const tail = useRef<EventRow[]>([]);
  const key = JSON.stringify([sources, minLevel]);

  useEffect(() => {
    const filter: Record<string, unknown> = {};
    if (sources.length) filter.sources = sources;
    if (minLevel) filter.minLevel = minLevel;
    let active = true;
    let catchUpOnNext = false;
    tail.current = [];
    setEvents([]);

    const merge = (incoming: EventRow[]) => {
      if (!active) return;
      tail.current = mergeEvents(tail.current, incoming, TAIL_CAP);
      setEvents(tail.current);
    };

    const catchUp = async () => {
      let after = resumeCursor(tail.current);
      if (!after) return;
      for (let page = 0; page < CATCH_UP_PAGES && active; page += 1) {
        const data: { events: EventEdges } = await api.request(ops.EVENTS_AFTER, {
          filter,
          after,
          first: 500,
        });
        merge(rows(data.events));
        const info: EventEdges['pageInfo'] = data.events.pageInfo;
        if (!info?.hasNextPage || !info.endCursor) return;
        after = info.endCursor;
      }
    };

    const stop = api.subscribe<{ eventCreated: EventRow }>(ops.EVENT_CREATED, { filter }, {
      next: (d) => {
        merge([d.eventCreated]);
        if (catchUpOnNext) {
          catchUpOnNext = false;
          catchUp().catch((e) => setError(message(e)));
        }
      },
      error: (e: ApiError) => {
        // The server skipped items (this client lagged): read them back.
        setError(e.message);
        catchUp().catch((err) => setError(message(err)));
      },
    });

    api
      .request<{ events: EventEdges }>(ops.RECENT_EVENTS, { filter, last: 100 })
      .then((data) => {
        merge(rows(data.events));
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
  const [names, setNames] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const reload = useCallback(async () => {
    try {
      const data = await api.request<{ metricNames: string[] }>(ops.METRIC_NAMES);
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
export function useMetricSeries(api: Api, name: string | null) {
  const [series, setSeries] = useState<Series[]>([]);
  const [range, setRange] = useState<{ from: number; to: number }>(() => {
    const to = Date.now();
    return { from: to - WINDOW_MS, to };
  });
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    if (!name) {
      setSeries([]);
      return;
    }
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
  }, [api, name]);

  return { series, range, error };
}
