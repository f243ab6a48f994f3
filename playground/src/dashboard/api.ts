// The dashboard's connection to Sightline: GraphQL over HTTP for queries and
// mutations, one graphql-transport-ws WebSocket for every live stream. The
// socket carries the session token in its `connection_init`, reconnects with
// backoff after the server goes away (a restart, a network blip) and tells
// the panels when it is back so they can fetch what they missed.
import { createClient, type Client } from 'graphql-ws';

/** Where the session token is kept: per browser tab, gone when it closes. */
export const TOKEN_KEY = 'sightline.token';

/** A GraphQL error with the server's `extensions.code`. */
export class ApiError extends Error {
  readonly code: string;
  readonly field?: string;

  constructor(message: string, code: string, field?: string) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.field = field;
  }
}

interface GraphQLErrorShape {
  message: string;
  extensions?: { code?: string; field?: string };
}

/** The first error of a GraphQL response as an [`ApiError`]. */
export function toApiError(errors: GraphQLErrorShape[]): ApiError {
  const first = errors[0];
  return new ApiError(
    first?.message ?? 'unknown error',
    first?.extensions?.code ?? 'INTERNAL',
    first?.extensions?.field,
  );
}

/** What the live connection is doing, for the status badge. */
export type LinkState = 'connecting' | 'live' | 'reconnecting' | 'offline';

type Listener<T> = (value: T) => void;

/** Handlers of one subscription. */
export interface SubscriptionHandlers<T> {
  next(data: T): void;
  /** Errors the server reports for this stream (e.g. skipped items). */
  error?(error: ApiError): void;
}

/** Waits `retries`-dependent time: 0.5 s, 1 s, 2 s, then 4 s with jitter. */
async function backoff(retries: number): Promise<void> {
  const base = Math.min(500 * 2 ** retries, 4000);
  const jitter = Math.floor(Math.random() * 400);
  await new Promise((resolve) => setTimeout(resolve, base + jitter));
}

function isCloseEvent(value: unknown): value is { code: number; reason: string } {
  return typeof value === 'object' && value !== null && 'code' in value && 'reason' in value;
}

/** A logged-in session's client. */
export class Api {
  readonly token: string;
  private readonly ws: Client;
  private state: LinkState = 'connecting';
  private readonly stateListeners = new Set<Listener<LinkState>>();
  private readonly resumeListeners = new Set<() => void>();
  private readonly authListeners = new Set<Listener<string>>();
  private disposed = false;

  constructor(token: string) {
    this.token = token;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    this.ws = createClient({
      url: `${scheme}//${location.host}/graphql`,
      connectionParams: () => ({ Authorization: `Bearer ${this.token}` }),
      lazy: false,
      keepAlive: 10_000,
      retryAttempts: Number.POSITIVE_INFINITY,
      retryWait: backoff,
      // 4403: the token is no longer valid; retrying cannot help.
      shouldRetry: (e) => !(isCloseEvent(e) && e.code === 4403),
      onNonLazyError: (e) => {
        if (isCloseEvent(e) && e.code === 4403) this.authFailed('your session has ended');
        else this.setState('offline');
      },
      on: {
        connecting: (isRetry) => this.setState(isRetry ? 'reconnecting' : 'connecting'),
        connected: (_socket, _payload, wasRetry) => {
          this.setState('live');
          if (wasRetry) for (const listener of this.resumeListeners) listener();
        },
        closed: (event) => {
          if (this.disposed) return;
          if (isCloseEvent(event) && event.code === 4403) {
            this.authFailed('your session has ended');
            return;
          }
          this.setState('reconnecting');
        },
      },
    });
  }

  /** The current state of the live connection. */
  linkState(): LinkState {
    return this.state;
  }

  /** Calls `listener` on every change of the live connection's state. */
  onLinkState(listener: Listener<LinkState>): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  /** Calls `listener` each time the live connection comes back after a loss. */
  onResume(listener: () => void): () => void {
    this.resumeListeners.add(listener);
    return () => this.resumeListeners.delete(listener);
  }

  /** Calls `listener` when the server no longer accepts the token. */
  onAuthFailed(listener: Listener<string>): () => void {
    this.authListeners.add(listener);
    return () => this.authListeners.delete(listener);
  }

  /** Runs a query or mutation over HTTP and returns its `data`. */
  async request<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    return this.send<T>(query, variables);
  }

  /** Starts a subscription; the returned function stops it. */
  subscribe<T>(
    query: string,
    variables: Record<string, unknown>,
    handlers: SubscriptionHandlers<T>,
  ): () => void {
    return this.ws.subscribe<T>(
      { query, variables },
      {
        next: (result) => {
          if (result.errors?.length) {
            handlers.error?.(toApiError(result.errors as GraphQLErrorShape[]));
          }
          if (result.data) handlers.next(result.data as T);
        },
        error: (error) => {
          if (Array.isArray(error)) handlers.error?.(toApiError(error as GraphQLErrorShape[]));
          else if (!isCloseEvent(error)) {
            handlers.error?.(new ApiError(String(error), 'INTERNAL'));
          }
        },
        complete: () => {},
      },
    );
  }

  /** Closes the live connection for good. */
  dispose(): void {
    this.disposed = true;
    void this.ws.dispose();
  }

  private async send<T>(query: string, variables: Record<string, unknown>): Promise<T> {
    let response: Response;
    try {
      response = await fetch('/graphql', {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json',
          authorization: `Bearer ${this.token}`,
        },
        body: JSON.stringify({ query, variables }),
      });
    } catch {
      throw new ApiError('the server cannot be reached', 'UNAVAILABLE');
    }
    let body: { data?: T; errors?: GraphQLErrorShape[] };
    try {
      body = await response.json();
    } catch {
      throw new ApiError(`the server answered ${response.status}`, 'UNAVAILABLE');
    }
    if (body.errors?.length) {
      const error = toApiError(body.errors);
      if (error.code === 'UNAUTHENTICATED') this.authFailed(error.message);
      throw error;
    }
    if (body.data === undefined || body.data === null) {
      throw new ApiError('the server sent no data', 'INTERNAL');
    }
    return body.data;
  }

  private setState(state: LinkState): void {
    if (this.disposed || this.state === state) return;
    this.state = state;
    for (const listener of this.stateListeners) listener(state);
  }

  private authFailed(message: string): void {
    if (this.disposed) return;
    for (const listener of this.authListeners) listener(message);
  }
}

/** Logs in over HTTP (no token yet) and returns the session token. */
export async function login(username: string, password: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({
        query:
          'mutation DashboardLogin($input: LoginInput!) { login(input: $input) { token } }',
        variables: { input: { username, password } },
      }),
    });
  } catch {
    throw new ApiError('the server cannot be reached', 'UNAVAILABLE');
  }
  const body = (await response.json()) as {
    data?: { login: { token: string } };
    errors?: GraphQLErrorShape[];
  };
  if (body.errors?.length) throw toApiError(body.errors);
  if (!body.data) throw new ApiError('the server sent no data', 'INTERNAL');
  return body.data.login.token;
}
