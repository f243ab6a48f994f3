// The GraphiQL playground served at `/`: queries and mutations over HTTP,
// subscriptions over graphql-transport-ws on the same `/graphql` path, with
// the token from the headers editor sent both as the `Authorization` header
// and in the WebSocket's `connection_init` payload.
import 'graphiql/setup-workers/vite';
import 'graphiql/style.css';
import '@graphiql/react/font/roboto.css';
import '@graphiql/react/font/fira-code.css';
import './playground.css';

import { createGraphiQLFetcher, type Fetcher } from '@graphiql/toolkit';
import { GraphiQL } from 'graphiql';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';

import { DEFAULT_HEADERS, EXAMPLES } from './examples';
import { withoutEmptyAuthorization } from './headers';

const wsScheme = location.protocol === 'https:' ? 'wss:' : 'ws:';

const base = createGraphiQLFetcher({
  url: '/graphql',
  // A new graphql-ws client per subscription, whose connection_init payload
  // is the headers editor's content ({"Authorization": "Bearer …"}).
  subscriptionUrl: `${wsScheme}//${location.host}/graphql`,
  enableIncrementalDelivery: false,
});

// The prefilled `Bearer ` with no token yet is dropped rather than sent, so
// a newcomer's first `login` and `me` get clear answers.
const fetcher: Fetcher = (params, opts) =>
  base(params, opts && { ...opts, headers: withoutEmptyAuthorization(opts.headers) });

function Playground() {
  return (
    <GraphiQL
      fetcher={fetcher}
      defaultTabs={EXAMPLES.map((e) => ({ ...e, headers: DEFAULT_HEADERS }))}
      defaultHeaders={DEFAULT_HEADERS}
      initialHeaders={DEFAULT_HEADERS}
      defaultEditorToolsVisibility="headers"
      shouldPersistHeaders={false}
    >
      <GraphiQL.Logo>
        <span className="sightline-logo">
          Sightline <a href="/dashboard">dashboard →</a>
        </span>
      </GraphiQL.Logo>
    </GraphiQL>
  );
}

const root = document.getElementById('graphiql');
if (root) {
  root.textContent = '';
  createRoot(root).render(
    <StrictMode>
      <Playground />
    </StrictMode>,
  );
}
