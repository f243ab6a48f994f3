// The dashboard's shell: the login form, then the header (who is logged in,
// whether the live connection is up) and the four panels, plus the incident
// detail panel when an incident is chosen.
import { type FormEvent, useEffect, useRef, useState } from 'react';

import { Api, TOKEN_KEY, login } from './api';
import { IncidentDetail } from './IncidentDetail';
import { useLinkState } from './hooks';
import * as ops from './operations';
import { AlertsPanel, EventTailPanel, IncidentsPanel, MetricPanel } from './panels';

/** The logged-in user, as `me` returns it. */
export interface Me {
  id: string;
  username: string;
  role: 'USER' | 'MODERATOR' | 'ADMIN';
}

export function App() {
  const [token, setToken] = useState<string | null>(() => sessionStorage.getItem(TOKEN_KEY));
  const [notice, setNotice] = useState<string | null>(null);

  const signIn = (newToken: string) => {
    sessionStorage.setItem(TOKEN_KEY, newToken);
    setNotice(null);
    setToken(newToken);
  };
  const signOut = (why: string | null) => {
    sessionStorage.removeItem(TOKEN_KEY);
    setNotice(why);
    setToken(null);
  };

  if (!token) return <LoginForm notice={notice} onLogin={signIn} />;
  return <Dashboard key={token} token={token} onSignOut={signOut} />;
}

function LoginForm({ notice, onLogin }: { notice: string | null; onLogin: (token: string) => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onLogin(await login(username.trim(), password));
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      setBusy(false);
    }
  };

  return (
    <main className="login">
      <form className="card login-card" onSubmit={submit} aria-label="Log in">
        <h1>Sightline</h1>
        <p className="muted">Log in to watch incidents, alerts and events live.</p>
        {notice && <p className="notice">{notice}</p>}
        <label>
          Username or email
          <input
            name="username"
            autoComplete="username"
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            required
            autoFocus
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </label>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
        <p className="muted small">
          The token stays in this tab only. <a href="/">GraphQL playground</a>
        </p>
      </form>
    </main>
  );
}

const LINK_LABELS = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  offline: 'offline',
} as const;

function Dashboard({ token, onSignOut }: { token: string; onSignOut: (why: string | null) => void }) {
  const [api, setApi] = useState<Api | null>(null);
  const signOut = useRef(onSignOut);
  signOut.current = onSignOut;

  useEffect(() => {
    const client = new Api(token);
    const stop = client.onAuthFailed((why) => signOut.current(`Please log in again: ${why}.`));
    setApi(client);
    return () => {
      stop();
      client.dispose();
    };
  }, [token]);

  if (!api) return null;
  return <Panels api={api} onSignOut={(why) => signOut.current(why)} />;
}

function Panels({ api, onSignOut }: { api: Api; onSignOut: (why: string | null) => void }) {
  const link = useLinkState(api);
  const [me, setMe] = useState<Me | null>(null);
  const [selected, setSelected] = useState<string | null>(null);

  useEffect(() => {
    api
      .request<{ me: Me }>(ops.ME)
      .then((d) => setMe(d.me))
      .catch(() => {});
  }, [api]);

  const logout = async () => {
    try {
      await api.request(ops.LOGOUT);
    } catch {
      // Logging out locally is what matters; the session expires anyway.
    }
    onSignOut(null);
  };

  return (
    <div className="shell">
      <header className="topbar">
        <h1>Sightline</h1>
        <span className={`link link-${link}`} data-testid="link-state" title="Live updates">
          {LINK_LABELS[link]}
        </span>
        <nav>
          <a href="/">Playground</a>
          {me && (
            <span className="who">
              {me.username} <span className="role">{me.role.toLowerCase()}</span>
            </span>
          )}
          <button type="button" onClick={logout}>
            Log out
          </button>
        </nav>
      </header>
      <main className="grid">
        <IncidentsPanel api={api} onSelect={setSelected} selected={selected} />
        <AlertsPanel api={api} />
        <MetricPanel api={api} />
        <EventTailPanel api={api} />
      </main>
      {selected && <IncidentDetail api={api} id={selected} onClose={() => setSelected(null)} />}
    </div>
  );
}
