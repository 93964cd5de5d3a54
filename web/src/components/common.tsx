/** Small pieces the pages share: badges, the SLA clock, a data hook with refresh. */
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { useI18n } from '../i18n/index.js';

export function PriorityBadge({ priority }: { priority: string }) {
  return <span class={`prio prio-${priority}`}>{priority}</span>;
}

export function StatusBadge({ status }: { status: string }) {
  const { tx } = useI18n();
  return (
    <span class={`status status-${status}`} data-status={status}>
      {tx('status', status)}
    </span>
  );
}

/** The clock that runs: time left to a due time, or the frozen time left while paused. */
export function SlaClock(props: {
  dueAt: string | null;
  leftMs: number | null;
  paused: boolean;
  now: number;
  skewMs: number;
}) {
  const { t, duration } = useI18n();
  if (props.dueAt === null && props.leftMs === null) return <span class="muted">{t('common.none')}</span>;
  const left = props.paused
    ? (props.leftMs ?? 0)
    : Date.parse(props.dueAt ?? '') - (props.now + props.skewMs);
  const d = duration(left);
  const key = props.paused
    ? left < 0
      ? 'sla.pausedOverdue'
      : 'sla.paused'
    : left < 0
      ? 'sla.overdue'
      : 'sla.left';
  const tone = left < 0 ? 'sla-over' : left < 30 * 60_000 ? 'sla-soon' : 'sla-ok';
  return (
    <span class={`sla ${tone}${props.paused ? ' sla-paused' : ''}`} data-left-ms={Math.round(left)}>
      {t(key, { d })}
    </span>
  );
}

/** Re-renders every `ms` so clocks move without refetching. */
export function useNow(ms = 15_000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

export interface Loaded<T> {
  data: T | null;
  error: Error | null;
  loading: boolean;
  /** Fetches again, keeping the current data on screen meanwhile. */
  reload(): void;
}

/**
 * Loads with `fetcher` whenever `key` changes. Answers to superseded requests are dropped, so a
 * slow answer never overwrites a newer one.
 */
export function useLoad<T>(key: string, fetcher: () => Promise<T>): Loaded<T> {
  const [state, setState] = useState<{ data: T | null; error: Error | null; loading: boolean }>({
    data: null,
    error: null,
    loading: true,
  });
  const generation = useRef(0);
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;
  const run = useCallback(() => {
    const mine = ++generation.current;
    setState((s) => ({ ...s, loading: true }));
    fetcherRef.current().then(
      (data) => {
        if (mine === generation.current) setState({ data, error: null, loading: false });
      },
      (error: unknown) => {
        if (mine === generation.current)
          setState((s) => ({ data: s.data, error: error as Error, loading: false }));
      },
    );
  }, []);
  // `key` decides when to load again; `run` reads the latest fetcher from a ref.
  useEffect(run, [key]);
  return { ...state, reload: run };
}

/** Calls fn at most once per `ms`, trailing: a burst of live events becomes one refetch. */
export function useThrottled(fn: () => void, ms: number): () => void {
  const fnRef = useRef(fn);
  fnRef.current = fn;
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(
    () => () => {
      if (timer.current) clearTimeout(timer.current);
    },
    [],
  );
  return useCallback(() => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      fnRef.current();
    }, ms);
  }, [ms]);
}

export function ErrorBox(props: { error: Error; onRetry?: () => void }) {
  const { t } = useI18n();
  return (
    <p class="error" role="alert">
      {t('common.error', { message: props.error.message })}{' '}
      {props.onRetry && (
        <button type="button" class="ghost" onClick={props.onRetry}>
          {t('common.retry')}
        </button>
      )}
    </p>
  );
}

export function Field(props: { label: string; children: ComponentChildren; testid?: string }) {
  return (
    <div class="field" data-testid={props.testid}>
      <dt>{props.label}</dt>
      <dd>{props.children}</dd>
    </div>
  );
}
