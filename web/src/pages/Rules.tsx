/** The loaded rules, read-only: what runs, at which version, how often it fired, what went wrong. */
import { api, type LoadIssue, type RulesInfo } from '../api.js';
import { ErrorBox, useLoad } from '../components/common.js';
import { useI18n } from '../i18n/index.js';

export function Rules() {
  const { t, tx, number, dateTime } = useI18n();
  const rules = useLoad<RulesInfo>('rules', () => api<RulesInfo>('/api/v1/rules'));
  if (rules.error && !rules.data) return <ErrorBox error={rules.error} onRetry={rules.reload} />;
  const d = rules.data;
  if (!d) return <p class="loading">{t('common.loading')}</p>;
  const issue = (i: LoadIssue) => `${i.file}:${i.line}:${i.col} ${i.message}`;
  return (
    <section class="rules">
      <h1>{t('rules.title')}</h1>
      <p class="muted">
        {t('rules.subtitle', {
          at: d.lastReloadAt ? dateTime(d.lastReloadAt) : t('rules.never'),
          devices: number(d.devices),
        })}
      </p>
      {d.loadErrors.length > 0 && (
        <div class="error" role="alert" data-testid="rule-load-errors">
          <strong>{t('rules.loadErrors')}</strong>
          <ul>
            {d.loadErrors.map((e) => (
              <li key={issue(e)} class="mono">
                {issue(e)}
              </li>
            ))}
          </ul>
        </div>
      )}
      {d.warnings.length > 0 && (
        <details class="card">
          <summary>
            {t('rules.warnings')} ({d.warnings.length})
          </summary>
          <ul>
            {d.warnings.map((w) => (
              <li key={issue(w)} class="mono">
                {issue(w)}
              </li>
            ))}
          </ul>
        </details>
      )}
      {d.rules.length === 0 ? (
        <p class="empty">{t('rules.empty')}</p>
      ) : (
        <table class="grid" data-testid="rules">
          <thead>
            <tr>
              <th>{t('rules.col.id')}</th>
              <th>{t('rules.col.version')}</th>
              <th>{t('rules.col.severity')}</th>
              <th>{t('rules.col.enabled')}</th>
              <th class="num">{t('rules.col.firing')}</th>
              <th class="num">{t('rules.col.fired')}</th>
              <th class="num">{t('rules.col.evaluations')}</th>
              <th class="num">{t('rules.col.errors')}</th>
              <th>{t('rules.col.lastError')}</th>
            </tr>
          </thead>
          <tbody>
            {d.rules.map((r) => (
              <tr key={r.id} data-rule={r.id}>
                <td>
                  <span class="mono">{r.id}</span>
                  <div class="sub">
                    {r.title}
                    {r.file ? ` · ${r.file}${r.line ? `:${r.line}` : ''}` : ''}
                  </div>
                </td>
                <td class="mono">{r.version}</td>
                <td>
                  {tx('severity', r.severity)}
                  {r.safety && <span class="tag tag-safety">{t('ticket.safety')}</span>}
                </td>
                <td>{r.enabled ? t('common.yes') : t('common.no')}</td>
                <td class="num" data-testid="rule-firing">
                  {number(r.firing)}
                </td>
                <td class="num">{number(r.firedTotal)}</td>
                <td class="num">{number(r.evaluations)}</td>
                <td class="num">{number(r.errors)}</td>
                <td>
                  {r.lastError
                    ? t('rules.errorOn', {
                        message: r.lastError.message,
                        device: r.lastError.deviceId ?? t('common.none'),
                        at: dateTime(r.lastError.at),
                      })
                    : t('common.none')}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
