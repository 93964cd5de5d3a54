/**
 * The queue: what needs someone now. The bridge orders and pages it (priority,
 * then SLA time left); live events refetch the page on screen, throttled so a
 * burst of a thousand ticket changes costs a few requests, not a thousand.
 */
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { api, type QueueFacets, type QueuePage } from '../api.js';
import {
  ErrorBox,
  PriorityBadge,
  SlaClock,
  StatusBadge,
  useLoad,
  useNow,
  useThrottled,
} from '../components/common.js';
import { useI18n } from '../i18n/index.js';
import { type LiveEvent, useLive } from '../live.js';
import { STATUSES } from '../model.js';
import { takePrefetched } from '../prefetch.js';
import { navigate } from '../router.js';

export const PAGE_SIZE = 50;
const FRESH_MS = 20_000;
const FILTERS = ['team', 'model', 'rule', 'region'] as const;
const UNRESOLVED = STATUSES.filter((s) => s !== 'resolved' && s !== 'closed');

/** The first render of the queue with data, for the bench (performance.getEntriesByName). */
const RENDERED_MARK = 'faultline:queue-rendered';

export function queueUrl(params: URLSearchParams): string {
  const q = new URLSearchParams();
  for (const key of ['status', ...FILTERS, 'breached', 'q'] as const) {
    const v = params.get(key);
    if (v) q.set(key, v);
  }
  const page = Math.max(1, Number(params.get('page') ?? '1') || 1);
  q.set('offset', String((page - 1) * PAGE_SIZE));
  q.set('limit', String(PAGE_SIZE));
  return `/api/v1/desk/queue?${q}`;
}

export function Queue({ params }: { params: URLSearchParams }) {
  const { t, tx, number, dateTime } = useI18n();
  const url = queueUrl(params);
  const received = useRef({ at: Date.now(), skew: 0 });
  const page = useLoad<QueuePage>(url, async () => {
    const data = await (takePrefetched<QueuePage>(url) ?? api<QueuePage>(url));
    received.current = { at: Date.now(), skew: Date.parse(data.at) - Date.now() };
    return data;
  });
  const now = useNow();
  const [fresh, setFresh] = useState<Map<string, number>>(new Map());

  const facets = useLoad<QueueFacets>('facets', () => api<QueueFacets>('/api/v1/desk/facets'));

  const refresh = useThrottled(page.reload, 400);
  // A new ticket may bring a new model or region for the menus; they can lag a little.
  const refreshFacets = useThrottled(facets.reload, 10_000);
  useLive(
    useCallback(
      (e: LiveEvent) => {
        if (e.kind === 'ticket.opened' || e.kind === 'ticket.reopened') {
          const id = e.ticketId;
          if (id) setFresh((m) => new Map(m).set(id, Date.now() + FRESH_MS));
          refreshFacets();
        }
        refresh();
      },
      [refresh, refreshFacets],
    ),
  );
  useEffect(() => {
    const timer = setInterval(() => {
      setFresh((m) => {
        const alive = [...m].filter(([, until]) => until > Date.now());
        return alive.length === m.size ? m : new Map(alive);
      });
    }, 5_000);
    return () => clearInterval(timer);
  }, []);

  useLayoutEffect(() => {
    if (page.data && performance.getEntriesByName(RENDERED_MARK).length === 0)
      performance.mark(RENDERED_MARK);
  }, [page.data]);

  const set = (changes: Record<string, string | null>) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v === null || v === '') next.delete(k);
      else next.set(k, v);
    }
    if (!('page' in changes)) next.delete('page');
    const qs = next.toString();
    navigate(`/desk/${qs ? `?${qs}` : ''}`, 'q' in changes);
  };

  const data = page.data;
  const status = params.get('status') ?? '';
  const pageNo = Math.max(1, Number(params.get('page') ?? '1') || 1);
  const unresolvedCount = data ? UNRESOLVED.reduce((n, s) => n + (data.counts[s] ?? 0), 0) : null;

  return (
    <section class="queue">
      <div class="page-head">
        <div>
          <h1>{t('queue.title')}</h1>
          <p class="muted">{t('queue.subtitle')}</p>
        </div>
      </div>

      <fieldset class="chips" aria-label={t('queue.filter.status')} data-testid="status-counts">
        <Chip
          active={status === ''}
          label={t('status.unresolved')}
          count={unresolvedCount}
          onClick={() => set({ status: null })}
          testid="count-unresolved"
        />
        {STATUSES.map((s) => (
          <Chip
            key={s}
            active={status === s}
            label={tx('status', s)}
            count={data ? (data.counts[s] ?? 0) : null}
            onClick={() => set({ status: s })}
            testid={`count-${s}`}
          />
        ))}
      </fieldset>

      <div class="filters">
        {FILTERS.map((f) => (
          <label key={f}>
            {t(`queue.filter.${f}`)}
            <select
              value={params.get(f) ?? ''}
              onChange={(e) => set({ [f]: (e.target as HTMLSelectElement).value })}
              data-testid={`filter-${f}`}
            >
              <option value="">{t('common.all')}</option>
              {(facets.data?.[f] ?? (params.get(f) ? [params.get(f)!] : [])).map((v) => (
                <option key={v} value={v}>
                  {v}
                </option>
              ))}
            </select>
          </label>
        ))}
        <label class="check">
          <input
            type="checkbox"
            checked={params.get('breached') === 'true'}
            onChange={(e) => set({ breached: (e.target as HTMLInputElement).checked ? 'true' : null })}
            data-testid="filter-breached"
          />
          {t('queue.filter.breached')}
        </label>
        <SearchBox value={params.get('q') ?? ''} onChange={(q) => set({ q })} />
        <button type="button" class="ghost" onClick={() => navigate('/desk/')}>
          {t('queue.filter.clear')}
        </button>
      </div>

      {page.error && <ErrorBox error={page.error} onRetry={page.reload} />}
      {!data && !page.error && <p class="loading">{t('common.loading')}</p>}
      {data && (
        <>
          <table class="grid" data-testid="queue" aria-busy={page.loading}>
            <thead>
              <tr>
                <th>{t('queue.col.priority')}</th>
                <th>{t('queue.col.sla')}</th>
                <th>{t('queue.col.ticket')}</th>
                <th>{t('queue.col.model')}</th>
                <th>{t('queue.col.region')}</th>
                <th>{t('queue.col.team')}</th>
                <th>{t('queue.col.rule')}</th>
                <th>{t('queue.col.status')}</th>
                <th>{t('queue.col.assignee')}</th>
                <th>{t('queue.col.opened')}</th>
              </tr>
            </thead>
            <tbody>
              {data.items.map((item) => {
                const isFresh = (fresh.get(item.id) ?? 0) > now;
                return (
                  <tr
                    key={item.id}
                    data-ticket={item.id}
                    data-device={item.device.id}
                    class={isFresh ? 'fresh' : ''}
                    onClick={(e) => {
                      if ((e.target as Element).closest('a')) return;
                      navigate(`/desk/tickets/${item.id}`);
                    }}
                  >
                    <td>
                      <PriorityBadge priority={item.priority} />
                    </td>
                    <td>
                      <SlaClock
                        dueAt={item.sla.dueAt}
                        leftMs={item.sla.leftMs}
                        paused={item.sla.paused}
                        now={now}
                        skewMs={received.current.skew}
                      />
                      {item.breached && <span class="tag tag-breached">{t('queue.breached')}</span>}
                    </td>
                    <td class="title-cell">
                      <a class="title-link" href={`/desk/tickets/${item.id}`}>
                        {item.title}
                      </a>
                      <div class="sub">
                        #{item.id} · {item.device.id}
                        {item.safety && <span class="tag tag-safety">{t('queue.safety')}</span>}
                        {isFresh && <span class="tag tag-new">{t('queue.new')}</span>}
                      </div>
                    </td>
                    <td>{item.device.model}</td>
                    <td>{item.device.region ?? t('common.none')}</td>
                    <td>{item.team}</td>
                    <td class="mono">{item.code ? `${item.ruleId} (${item.code})` : item.ruleId}</td>
                    <td>
                      <StatusBadge status={item.status} />
                    </td>
                    <td>{item.assignee ?? <span class="muted">{t('common.none')}</span>}</td>
                    <td class="nowrap">{dateTime(item.openedAt)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          {data.items.length === 0 && <p class="empty">{t('queue.empty')}</p>}
          <div class="pager" data-testid="pager">
            <span>
              {t('queue.range', {
                from: number(data.total === 0 ? 0 : data.offset + 1),
                to: number(data.offset + data.items.length),
                total: number(data.total),
              })}
            </span>
            <button
              type="button"
              class="ghost"
              disabled={pageNo <= 1}
              onClick={() => set({ page: String(pageNo - 1) })}
            >
              {t('queue.prev')}
            </button>
            <button
              type="button"
              class="ghost"
              disabled={data.offset + data.items.length >= data.total}
              onClick={() => set({ page: String(pageNo + 1) })}
            >
              {t('queue.next')}
            </button>
          </div>
        </>
      )}
    </section>
  );
}

function Chip(props: {
  active: boolean;
  label: string;
  count: number | null;
  onClick: () => void;
  testid: string;
}) {
  return (
    <button
      type="button"
      class={`chip${props.active ? ' active' : ''}`}
      aria-pressed={props.active}
      onClick={props.onClick}
      data-testid={props.testid}
    >
      {props.label} <span class="count">{props.count ?? '…'}</span>
    </button>
  );
}

/** Typing narrows the queue after a pause, not on every key. */
function SearchBox(props: { value: string; onChange: (q: string) => void }) {
  const { t } = useI18n();
  const [text, setText] = useState(props.value);
  useEffect(() => setText(props.value), [props.value]);
  // The parent's callback changes every render; a live refresh must not restart the pause.
  const onChange = useRef(props.onChange);
  onChange.current = props.onChange;
  useEffect(() => {
    if (text === props.value) return;
    const timer = setTimeout(() => onChange.current(text), 300);
    return () => clearTimeout(timer);
  }, [text, props.value]);
  return (
    <label>
      {t('queue.filter.search')}
      <input
        type="search"
        value={text}
        onInput={(e) => setText((e.target as HTMLInputElement).value)}
        data-testid="filter-q"
      />
    </label>
  );
}
