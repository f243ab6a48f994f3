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

const ANALYSIS_FIELDS = `
  computedAt
  windowStart
  windowEnd
  suspects {
    rank
    source
    windowErrors
    baselineErrors
    windowRatePerMinute
    baselineRatePerMinute
    score
    firstError { eventId at level message }
  }
  alerts { ruleName labels value at }
  metrics { rank name labels windowMean baselineMean zScore }
`;

const EVENT_FIELDS = `
  id
  cursor
  receivedAt
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
  incidents(filter: { status: [OPEN, INVESTIGATING] }, first: 200) {
    totalCount
    nodes { ${INCIDENT_FIELDS} }
  }
}`;

export const INCIDENT_CREATED = `
subscription DashboardIncidentCreated {
  incidentCreated { ${INCIDENT_FIELDS} }
}`;

export const INCIDENT_UPDATED = `
subscription DashboardIncidentUpdated($id: ID!) {
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
    alerts { id state firedAt rule { name } }
    notes(first: 100) { totalCount nodes { id body createdAt author { username } } }
    timeline(first: 200) {
      totalCount
      windowStart
      nodes { at kind reason summary actor { username } }
    }
    analysis { ${ANALYSIS_FIELDS} }
  }
}`;

export const ANALYZE_INCIDENT = `
mutation DashboardAnalyze($input: AnalyzeIncidentInput!) {
  analyzeIncident(input: $input) { computedAt }
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
    acknowledged
    rule { id name severity }
  }
}`;

export const ALERT_STATE_CHANGED = `
subscription DashboardAlertStateChanged {
  alertStateChanged { from to at ruleId }
}`;

export const RECENT_EVENTS = `
query DashboardRecentEvents($filter: EventFilter, $last: Int) {
  events(filter: $filter, last: $last) {
    nodes { ${EVENT_FIELDS} }
  }
}`;

export const EVENTS_AFTER = `
query DashboardEventsAfter($filter: EventFilter, $after: String, $first: Int) {
  events(filter: $filter, after: $after, first: $first) {
    nodes { ${EVENT_FIELDS} }
    pageInfo { hasNextPage endCursor }
  }
}`;

export const EVENT_CREATED = `
subscription DashboardEventCreated($filter: EventFilter) {
  eventCreated(filter: $filter) { ${EVENT_FIELDS} }
}`;

export const METRIC_NAMES = `
query DashboardMetricNames {
  metricNames { name metricType }
}`;

export const METRIC_SERIES = `
query DashboardMetricSeries(
  $name: String!
  $from: DateTime!
  $to: DateTime!
  $step: Int!
  $aggregation: Aggregation!
) {
  metricSeries(name: $name, from: $from, to: $to, step: $step, aggregation: $aggregation) {
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
  ANALYZE_INCIDENT,
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
