// Every GraphQL operation the dashboard sends, in one place, so a test can
// validate them all against the server's schema (tests/schema.test.mjs).

const INCIDENT_FIELDS = `
  id
  title
  severity
  status
  startedAt
  acknowledgedAt
  resolvedAt
  assignedTo { id username }
`;

const EVENT_FIELDS = `
  id
  timestamp
  eventType
  source
  level
  message
`;

export const ME = `
query DashboardMe {
  me { id username role }
}`;

export const LOGOUT = `
mutation DashboardLogout {
  logout
}`;

export const OPEN_INCIDENTS = `
query DashboardOpenIncidents {
  incidents(filter: { statuses: [OPEN, INVESTIGATING] }, first: 200) {
    nodes { ${INCIDENT_FIELDS} }
  }
}`;

export const INCIDENT_CREATED = `
subscription DashboardIncidentCreated {
  incidentCreated { ${INCIDENT_FIELDS} }
}`;

export const INCIDENT_UPDATED = `
subscription DashboardIncidentUpdated($id: ID) {
  incidentUpdated(id: $id) {
    incident { ${INCIDENT_FIELDS} }
    changes { field from to }
    actor { username }
    at
  }
}`;

export const INCIDENT_DETAIL = `
query DashboardIncident($id: ID!) {
  incident(id: $id) {
    ${INCIDENT_FIELDS}
    description
    closedAt
    rootCause
    sources
    timeToAcknowledge
    timeToResolve
    createdBy { id username }
    notes { id body createdAt author { username } }
    timeline(first: 200) {
      nodes {
        at
        kind
        reason
        summary
        actor { username }
        event { id level source message }
      }
    }
    analysis {
      computedAt
      suspects { source score baselineErrorRate windowErrorRate errorCount firstError { id timestamp message } }
      alerts { rule { name } labels at }
      metrics { name labels zScore windowMean baselineMean }
    }
  }
}`;

export const ACKNOWLEDGE_INCIDENT = `
mutation DashboardAcknowledge($input: AcknowledgeIncidentInput!) {
  acknowledgeIncident(input: $input) { ${INCIDENT_FIELDS} }
}`;

export const UPDATE_INCIDENT_STATUS = `
mutation DashboardUpdateStatus($input: UpdateIncidentInput!) {
  updateIncident(input: $input) { ${INCIDENT_FIELDS} }
}`;

export const RESOLVE_INCIDENT = `
mutation DashboardResolve($input: ResolveIncidentInput!) {
  resolveIncident(input: $input) { ${INCIDENT_FIELDS} }
}`;

export const ADD_NOTE = `
mutation DashboardAddNote($input: AddIncidentNoteInput!) {
  addIncidentNote(input: $input) { id }
}`;

export const FIRING_ALERTS = `
query DashboardFiringAlerts {
  alerts(state: FIRING) {
    id
    state
    labels
    value
    firedAt
    silenced
    rule { id name severity }
  }
}`;

export const ALERT_STATE_CHANGED = `
subscription DashboardAlertStateChanged {
  alertStateChanged { from to at rule { id } }
}`;

export const RECENT_EVENTS = `
query DashboardRecentEvents($filter: EventFilter, $last: Int) {
  events(filter: $filter, last: $last) {
    edges { cursor node { ${EVENT_FIELDS} } }
  }
}`;

export const EVENTS_AFTER = `
query DashboardEventsAfter($filter: EventFilter, $after: String, $first: Int) {
  events(filter: $filter, after: $after, first: $first) {
    edges { cursor node { ${EVENT_FIELDS} } }
    pageInfo { hasNextPage endCursor }
  }
}`;

export const EVENT_CREATED = `
subscription DashboardEventCreated($filter: EventFilter) {
  eventCreated(filter: $filter) { cursor ${EVENT_FIELDS} }
}`;

export const METRIC_NAMES = `
query DashboardMetricNames {
  metricNames
}`;

export const METRIC_SERIES = `
query DashboardMetricSeries($name: String!, $from: DateTime!, $to: DateTime!, $step: Int!) {
  metricSeries(name: $name, from: $from, to: $to, step: $step, aggregation: AVG) {
    labels
    points { timestamp value }
  }
}`;

/** All operations, by export name, for the schema test. */
export const ALL: Record<string, string> = {
  ME,
  LOGOUT,
  OPEN_INCIDENTS,
  INCIDENT_CREATED,
  INCIDENT_UPDATED,
  INCIDENT_DETAIL,
  ACKNOWLEDGE_INCIDENT,
  UPDATE_INCIDENT_STATUS,
  RESOLVE_INCIDENT,
  ADD_NOTE,
  FIRING_ALERTS,
  ALERT_STATE_CHANGED,
  RECENT_EVENTS,
  EVENTS_AFTER,
  EVENT_CREATED,
  METRIC_NAMES,
  METRIC_SERIES,
};
