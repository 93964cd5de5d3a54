import { useState } from 'preact/hooks';
import { ApiError, api, type Me } from '../api.js';
import { useI18n } from '../i18n/index.js';

export function Login(props: { onSignedIn: (me: Me, token: string) => void; onToggleLocale: () => void }) {
  const { t } = useI18n();
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    const value = token.trim();
    if (!value) return;
    setBusy(true);
    setError(null);
    try {
      const me = await api<Me>('/api/v1/me', { token: value });
      props.onSignedIn(me, value);
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401
          ? t('login.invalid')
          : t('login.unreachable', { message: (err as Error).message }),
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="login">
      <form onSubmit={submit} class="card" data-testid="login">
        <div class="login-head">
          <h1>
            <strong>{t('app.name')}</strong> {t('app.title')}
          </h1>
          <button type="button" class="ghost" onClick={props.onToggleLocale} data-testid="locale-toggle">
            {t('nav.language')}
          </button>
        </div>
        <p class="muted">{t('login.intro')}</p>
        <label>
          {t('login.token')}
          <input
            type="password"
            name="token"
            autocomplete="off"
            spellcheck={false}
            value={token}
            onInput={(e) => setToken((e.target as HTMLInputElement).value)}
            required
          />
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? t('login.checking') : t('login.submit')}
        </button>
      </form>
    </div>
  );
}
