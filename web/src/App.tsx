import { useCallback, useEffect, useMemo, useState } from 'preact/hooks';
import { ApiError, api, type Me, setUnauthorizedHandler, storedToken, storeToken } from './api.js';
import { detectLocale, I18nContext, type Locale, makeI18n, saveLocale, useI18n } from './i18n/index.js';
import { connectLive, disconnectLive, type LiveState, useLiveState } from './live.js';
import { Fleet } from './pages/Fleet.js';
import { Login } from './pages/Login.js';
import { Queue } from './pages/Queue.js';
import { Rules } from './pages/Rules.js';
import { TicketPage } from './pages/Ticket.js';
import { type Route, useRoute } from './router.js';
import { SessionContext } from './session.js';

type SessionState =
  | { kind: 'checking' }
  | { kind: 'unreachable'; message: string }
  | { kind: 'signed-out' }
  | { kind: 'signed-in'; me: Me };

export function App() {
  const [locale, setLocale] = useState<Locale>(detectLocale);
  const i18n = useMemo(() => makeI18n(locale), [locale]);
  const [session, setSession] = useState<SessionState>(() =>
    storedToken() ? { kind: 'checking' } : { kind: 'signed-out' },
  );

  const signOut = useCallback(() => {
    storeToken(null);
    disconnectLive();
    setSession({ kind: 'signed-out' });
  }, []);

  const signedIn = useCallback((me: Me, token: string) => {
    storeToken(token);
    connectLive(token);
    setSession({ kind: 'signed-in', me });
  }, []);

  // A stored token is checked once on load. Only a refusal forgets it: a bridge that is briefly
  // unreachable (restarting) must not sign everyone out.
  const resume = useCallback(() => {
    const token = storedToken();
    if (!token) return;
    setSession({ kind: 'checking' });
    api<Me>('/api/v1/me').then(
      (me) => signedIn(me, token),
      (err: unknown) => {
        if (err instanceof ApiError && err.status === 401) signOut();
        else setSession({ kind: 'unreachable', message: (err as Error).message });
      },
    );
  }, [signOut, signedIn]);

  useEffect(() => {
    setUnauthorizedHandler(signOut);
    resume();
  }, [signOut, resume]);

  useEffect(() => {
    document.documentElement.lang = i18n.tag;
    document.title = `${i18n.t('app.name')} · ${i18n.t('app.title')}`;
  }, [i18n]);

  const toggleLocale = () => {
    const next = locale === 'en' ? 'zh' : 'en';
    saveLocale(next);
    setLocale(next);
  };

  return (
    <I18nContext.Provider value={i18n}>
      {session.kind === 'signed-in' ? (
        <SessionContext.Provider value={session.me}>
          <Shell me={session.me} onSignOut={signOut} onToggleLocale={toggleLocale} />
        </SessionContext.Provider>
      ) : session.kind === 'checking' ? (
        <p class="loading">{i18n.t('common.loading')}</p>
      ) : session.kind === 'unreachable' ? (
        <div class="login">
          <p class="error" role="alert">
            {i18n.t('login.unreachable', { message: session.message })}{' '}
            <button type="button" class="ghost" onClick={resume}>
              {i18n.t('common.retry')}
            </button>
          </p>
        </div>
      ) : (
        <Login onSignedIn={signedIn} onToggleLocale={toggleLocale} />
      )}
    </I18nContext.Provider>
  );
}

function Shell(props: { me: Me; onSignOut: () => void; onToggleLocale: () => void }) {
  const { t, tx } = useI18n();
  const route = useRoute();
  const live = useLiveState();
  const section = route.page === 'ticket' ? 'queue' : route.page;
  const nav = (page: 'queue' | 'fleet' | 'rules', href: string) => (
    <a
      href={href}
      class={section === page ? 'active' : ''}
      aria-current={section === page ? 'page' : undefined}
    >
      {t(`nav.${page}`)}
    </a>
  );
  return (
    <>
      <header class="top">
        <a class="brand" href="/desk/">
          <strong>{t('app.name')}</strong> {t('app.title')}
        </a>
        <nav>
          {nav('queue', '/desk/')}
          {nav('fleet', '/desk/fleet')}
          {nav('rules', '/desk/rules')}
        </nav>
        <div class="spacer" />
        <LiveBadge state={live} />
        <span class="who" data-testid="who" data-role={props.me.role}>
          {t('nav.signedInAs', { name: props.me.name, role: tx('role', props.me.role) })}
        </span>
        <button
          type="button"
          class="ghost"
          onClick={props.onToggleLocale}
          aria-label={t('nav.languageLabel')}
          data-testid="locale-toggle"
        >
          {t('nav.language')}
        </button>
        <button type="button" class="ghost" onClick={props.onSignOut}>
          {t('nav.signOut')}
        </button>
      </header>
      <main>
        <Page route={route} />
      </main>
    </>
  );
}

function Page({ route }: { route: Route }) {
  const { t } = useI18n();
  switch (route.page) {
    case 'queue':
      return <Queue params={route.params} />;
    case 'ticket':
      return <TicketPage id={route.id} />;
    case 'fleet':
      return <Fleet />;
    case 'rules':
      return <Rules />;
    default:
      return (
        <p>
          {t('common.missingPage')} <a href="/desk/">{t('common.backToQueue')}</a>
        </p>
      );
  }
}

function LiveBadge({ state }: { state: LiveState }) {
  const { t } = useI18n();
  return (
    <span class={`live live-${state}`} data-testid="live" data-state={state}>
      <span class="dot" aria-hidden="true" />
      {t(`live.${state}`)}
    </span>
  );
}
