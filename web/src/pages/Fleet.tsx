/** The fleet at a glance: devices online, where tickets come from, how the desk is doing. */
import { useCallback, useState } from 'preact/hooks';
import {
  api,
  type DeviceStats,
  type FeedbackStats,
  type Incident,
  type TicketStats,
  type Trend,
} from '../api.js';
import { BarList, StackedColumns, topSeries } from '../components/Bars.js';
import { ErrorBox, PriorityBadge, useLoad, useThrottled } from '../components/common.js';
import { useI18n } from '../i18n/index.js';
import { useLive } from '../live.js';

interface FleetData {
  devices: DeviceStats;
  tickets: TicketStats;
  incidents: Incident[];
  /** Null when the bridge has no guides feature. */
  feedback: FeedbackStats | null;
}

async function loadFleet(): Promise<FleetData> {
  const [devices, tickets, incidents, feedback] = await Promise.all([
    api<DeviceStats>('/api/v1/stats/devices'),
    api<TicketStats>('/api/v1/stats/tickets'),
    api<{ items: Incident[] }>('/api/v1/incidents?limit=20'),
    api<FeedbackStats>('/api/v1/stats/owner-feedback').catch(() => null),
  ]);
  return { devices, tickets, incidents: incidents.items, feedback };
}

export function Fleet() {
  const i18n = useI18n();
  const { t, number, percent, duration, dateTime } = i18n;
  const fleet = useLoad<FleetData>('fleet', loadFleet);
  const [hours, setHours] = useState(14 * 24);
  const trendUrl = `/api/v1/desk/trend?hours=${hours}&tz=${new Date().getTimezoneOffset()}`;
  const trend = useLoad<Trend>(trendUrl, () => api<Trend>(trendUrl));
  // Fleet figures scan every ticket; a busy stream must not make each open fleet page do so constantly.
  const refreshFleet = useThrottled(fleet.reload, 10_000);
  const refreshTrend = useThrottled(trend.reload, 10_000);
  useLive(
    useCallback(() => {
      refreshFleet();
      refreshTrend();
    }, [refreshFleet, refreshTrend]),
  );

  if (fleet.error && !fleet.data) return <ErrorBox error={fleet.error} onRetry={fleet.reload} />;
  const d = fleet.data;
  if (!d) return <p class="loading">{t('common.loading')}</p>;
  const offline = Math.max(0, d.devices.total - d.devices.online - d.devices.disabled);
  const w = d.tickets.window;
  const na = t('common.notAvailable');
  const surveys = d.feedback?.surveys;
  const receipts = d.feedback?.receipts;

  return (
    <section class="fleet">
      <h1>{t('fleet.title')}</h1>
      <div class="cards">
        <section class="card" data-testid="fleet-devices">
          <h2>{t('fleet.devices')}</h2>
          <div class="big-figures">
            <Figure
              label={t('fleet.online')}
              value={number(d.devices.online)}
              tone="ok"
              testid="devices-online"
            />
            <Figure label={t('fleet.offline')} value={number(offline)} tone="warn" testid="devices-offline" />
            <Figure label={t('fleet.disabled')} value={number(d.devices.disabled)} />
            <Figure label={t('fleet.total')} value={number(d.devices.total)} />
          </div>
          <div class="stack-bar" aria-hidden="true">
            <span class="ok" style={{ flexGrow: d.devices.online }} />
            <span class="warn" style={{ flexGrow: offline }} />
            <span class="off" style={{ flexGrow: d.devices.disabled }} />
          </div>
        </section>
        <section class="card wide2" data-testid="fleet-figures">
          <h2>{t('fleet.figures')}</h2>
          <div class="big-figures">
            <Figure label={t('fleet.opened')} value={number(w.opened)} />
            <Figure label={t('fleet.openNow')} value={number(d.tickets.open.total)} />
            <Figure
              label={t('fleet.breachRate')}
              value={w.slaBreachRate === null ? na : percent(w.slaBreachRate)}
            />
            <Figure
              label={t('fleet.medianResponse')}
              value={w.medianResponseMs === null ? na : duration(w.medianResponseMs)}
            />
            <Figure
              label={t('fleet.medianResolution')}
              value={w.medianResolutionMs === null ? na : duration(w.medianResolutionMs)}
            />
            <Figure
              label={t('fleet.resolutionRate')}
              value={w.resolutionRate === null ? na : percent(w.resolutionRate)}
            />
            <Figure
              label={t('fleet.satisfaction')}
              value={
                surveys && surveys.averageScore !== null
                  ? t('fleet.satisfactionValue', {
                      score: number(surveys.averageScore, 1),
                      answered: number(surveys.answered),
                    })
                  : na
              }
            />
            <Figure
              label={t('fleet.fixedByGuide')}
              value={
                receipts && receipts.fixed + receipts.notFixed > 0
                  ? t('fleet.fixedValue', {
                      fixed: number(receipts.fixed),
                      answered: number(receipts.fixed + receipts.notFixed),
                    })
                  : na
              }
            />
          </div>
        </section>
      </div>

      <section class="card wide">
        <div class="card-head">
          <h2>{t('fleet.trend')}</h2>
          <div class="segmented">
            <button type="button" class={hours === 24 ? 'active' : ''} onClick={() => setHours(24)}>
              {t('fleet.range24h')}
            </button>
            <button type="button" class={hours === 14 * 24 ? 'active' : ''} onClick={() => setHours(14 * 24)}>
              {t('fleet.range14d')}
            </button>
          </div>
        </div>
        {trend.error && <ErrorBox error={trend.error} onRetry={trend.reload} />}
        {trend.data && (
          <div class="two">
            <div>
              <h3>{t('fleet.byRule')}</h3>
              <StackedColumns
                testid="trend-rule"
                label={`${t('fleet.trend')}: ${t('fleet.byRule')}`}
                buckets={trend.data.buckets}
                bucketMs={trend.data.bucketMs}
                series={topSeries(trend.data.byRule, 6, t('fleet.other'))}
              />
            </div>
            <div>
              <h3>{t('fleet.byModel')}</h3>
              <StackedColumns
                testid="trend-model"
                label={`${t('fleet.trend')}: ${t('fleet.byModel')}`}
                buckets={trend.data.buckets}
                bucketMs={trend.data.bucketMs}
                series={topSeries(trend.data.byModel, 6, t('fleet.other'))}
              />
            </div>
          </div>
        )}
      </section>

      <section class="card wide">
        <h2>{t('fleet.openBy')}</h2>
        <div class="four">
          <div>
            <h3>{t('fleet.byPriority')}</h3>
            <BarList counts={d.tickets.open.byPriority} testid="open-priority" />
          </div>
          <div>
            <h3>{t('fleet.byTeam')}</h3>
            <BarList counts={d.tickets.open.byTeam} />
          </div>
          <div>
            <h3>{t('fleet.byRule')}</h3>
            <BarList counts={d.tickets.open.byRule} testid="open-rule" />
          </div>
          <div>
            <h3>{t('fleet.byModel')}</h3>
            <BarList counts={d.tickets.open.byModel} />
          </div>
        </div>
      </section>

      <section class="card wide" data-testid="fleet-incidents">
        <h2>{t('fleet.incidents')}</h2>
        {d.incidents.length === 0 ? (
          <p class="muted">{t('fleet.noIncidents')}</p>
        ) : (
          <table class="grid">
            <thead>
              <tr>
                <th>{t('queue.col.priority')}</th>
                <th>{t('queue.col.ticket')}</th>
                <th>{t('fleet.incident.scope')}</th>
                <th>{t('fleet.incident.devices')}</th>
                <th>{t('fleet.incident.customers')}</th>
                <th>{t('queue.col.status')}</th>
                <th>{t('queue.col.opened')}</th>
              </tr>
            </thead>
            <tbody>
              {d.incidents.map((inc) => (
                <tr key={inc.id}>
                  <td>
                    <PriorityBadge priority={inc.priority} />
                  </td>
                  <td>
                    {inc.title}
                    <div class="sub">
                      <a
                        href={`/desk/?rule=${encodeURIComponent(inc.ruleId)}&model=${encodeURIComponent(inc.model)}`}
                      >
                        {inc.ruleId} · {t('fleet.incident.tickets')}
                      </a>
                    </div>
                  </td>
                  <td>
                    {inc.scope}: {inc.scopeValue}
                  </td>
                  <td>{number(inc.affectedDevices)}</td>
                  <td>{number(inc.affectedCustomers)}</td>
                  <td>
                    {t(inc.status === 'open' ? 'fleet.incident.status.open' : 'fleet.incident.status.closed')}
                  </td>
                  <td class="nowrap">{dateTime(inc.openedAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </section>
  );
}

function Figure(props: { label: string; value: string; tone?: 'ok' | 'warn'; testid?: string }) {
  const { t } = useI18n();
  const missing = props.value === t('common.notAvailable');
  return (
    <div
      class={`figure${props.tone ? ` tone-${props.tone}` : ''}${missing ? ' missing' : ''}`}
      data-testid={props.testid}
    >
      <div class="value">{props.value}</div>
      <div class="label">{props.label}</div>
    </div>
  );
}
