// The operations a newcomer finds in the playground's tabs, in the order they
// would run them: log in, look at yourself, ingest, query, subscribe, then
// open and resolve an incident.

/** The request headers every tab starts with: paste the token after `Bearer `. */
export const DEFAULT_HEADERS = '{\n  "Authorization": "Bearer "\n}';

/** One preloaded tab. */
export interface Example {
  query: string;
  variables?: string;
}

const json = (value: unknown) => JSON.stringify(value, null, 2);

export const EXAMPLES: Example[] = [
  {
    query: `# Welcome to Sightline's GraphQL playground.
#
# 1. Put the admin password in the variables below
#    and run this (▶ or Ctrl-Enter).
# 2. Paste the token into the headers below:
#    "Authorization": "Bearer <token>"
# 3. Try the other tabs, one example each.
#
# The Docs button (left) lists every type and field.
mutation LogIn($username: String!, $password: String!) {
  login(input: { username: $username, password: $password }) {
    token
    expiresAt
    user {
      id
      username
      role
    }
  }
}
`,
    variables: json({ username: 'admin', password: '' }),
  },
  {
    query: `# Who am I? Needs the token in the headers.
query Me {
  me {
    id
    username
    email
    role
  }
}
`,
  },
  {
    query: `# Ingest one event (any user or API key may).
# Batches of up to 1,000: createEvents.
mutation IngestEvent($input: CreateEventInput!) {
  createEvent(input: $input) {
    id
    eventType
    source
    level
    message
    tags
    timestamp
  }
}
`,
    variables: json({
      input: {
        eventType: 'LOG',
        source: 'checkout',
        level: 'ERROR',
        message: 'payment provider timed out after 5s',
        tags: { region: 'eu-west-1', request_id: 'req-42' },
        payload: { duration_ms: 5012, provider: 'acme-pay' },
      },
    }),
  },
  {
    query: `# Events as a Relay connection; pass endCursor
# as \`after\` for the next page.
query RecentEvents($filter: EventFilter, $first: Int) {
  events(filter: $filter, first: $first) {
    totalCount
    edges {
      cursor
      node {
        id
        timestamp
        eventType
        source
        level
        message
        tags
      }
    }
    pageInfo {
      hasNextPage
      endCursor
    }
  }
}
`,
    variables: json({ filter: { sources: ['checkout'] }, first: 20 }),
  },
  {
    query: `# Live events over WebSocket. The connection
# sends the headers below in its connection_init.
# Run it, then ingest an event from another tab
# or client and watch it arrive.
subscription LiveEvents($filter: EventFilter) {
  eventCreated(filter: $filter) {
    id
    cursor
    timestamp
    source
    level
    message
  }
}
`,
    variables: json({ filter: { minLevel: 'INFO' } }),
  },
  {
    query: `# Open an incident. Its timeline gathers the
# events of its sources.
mutation OpenIncident($input: CreateIncidentInput!) {
  createIncident(input: $input) {
    id
    title
    severity
    status
    startedAt
  }
}
`,
    variables: json({
      input: {
        title: 'Checkout payments failing',
        description: 'acme-pay times out for most requests',
        severity: 'HIGH',
        sources: ['checkout'],
      },
    }),
  },
  {
    query: `# Resolve it: paste the id from the previous tab.
mutation ResolveIncident($input: ResolveIncidentInput!) {
  resolveIncident(input: $input) {
    id
    status
    rootCause
    resolvedAt
    timeToResolve
  }
}
`,
    variables: json({
      input: { id: '', rootCause: 'acme-pay outage; retries exhausted the pool' },
    }),
  },
];
