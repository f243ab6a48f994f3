// Runs graphql-http's server audits (GraphQL over HTTP conformance) against
// the URL given as the first argument and prints one JSON line per audit:
// {"id", "name", "status": "ok" | "warn" | "error", "reason"}. Exits 0; the
// caller (tests/api/conformance.rs) decides what fails.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql url>');
  process.exit(2);
}
const results = await auditServer({ url });
for (const r of results) {
  const line = { id: r.id, name: r.name, status: r.status };
  if (r.status !== 'ok') line.reason = r.reason;
  console.log(JSON.stringify(line));
}
