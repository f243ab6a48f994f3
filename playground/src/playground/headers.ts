// Header clean-up shared by the playground's HTTP and WebSocket requests.

/**
 * The headers without an `Authorization` that holds only the scheme (the
 * prefilled `Bearer ` before a token is pasted), which the server would
 * otherwise reject as malformed credentials.
 */
export function withoutEmptyAuthorization(
  headers: Record<string, unknown> | undefined,
): Record<string, unknown> | undefined {
  if (!headers) return headers;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === 'authorization' && typeof value === 'string') {
      const trimmed = value.trim();
      if (trimmed === '' || /^bearer$/i.test(trimmed)) continue;
    }
    out[key] = value;
  }
  return out;
}
