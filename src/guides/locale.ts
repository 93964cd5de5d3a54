/**
 * Locale fallback: the exact tag, then its shorter forms (zh-Hant-TW → zh-Hant → zh), then
 * another variant of the same language (a zh owner reads zh-CN rather than English), then
 * English, then the configured default, then whatever exists.
 */

/** Canonical form of a BCP 47 tag (zh-cn → zh-CN), or null when it is not one. */
export function canonicalLocale(tag: string | null | undefined): string | null {
  if (!tag) return null;
  try {
    return Intl.getCanonicalLocales(tag.replace(/_/g, '-'))[0] ?? null;
  } catch {
    return null;
  }
}

/** The order in which locales are tried for `requested`, among `available`. */
export function fallbackChain(
  requested: string | null,
  available: readonly string[],
  defaultLocale = 'en',
): string[] {
  const out: string[] = [];
  const push = (l: string | null) => {
    if (l && available.includes(l) && !out.includes(l)) out.push(l);
  };
  const canon = canonicalLocale(requested);
  if (canon) {
    const parts = canon.split('-');
    for (let n = parts.length; n >= 1; n--) push(parts.slice(0, n).join('-'));
    const language = parts[0]!.toLowerCase();
    const sameLanguage = available
      .filter((l) => l.split('-')[0]!.toLowerCase() === language)
      // The default first when it is of this language (zh-CN for a bare zh), then a stable order.
      .sort((a, b) => Number(b === defaultLocale) - Number(a === defaultLocale) || a.localeCompare(b));
    for (const l of sameLanguage) push(l);
  }
  push('en');
  push(canonicalLocale(defaultLocale));
  for (const l of [...available].sort()) push(l);
  return out;
}

/** The best available locale for `requested`, or null when there is none at all. */
export function pickLocale(
  requested: string | null,
  available: readonly string[],
  defaultLocale?: string,
): string | null {
  return fallbackChain(requested, available, defaultLocale)[0] ?? null;
}
