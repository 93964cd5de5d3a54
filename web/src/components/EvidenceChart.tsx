/**
 * The chart that proves a ticket: the rule's metric around the anomaly, the
 * threshold it crossed, and when the rule was pending (condition holding, timer
 * running) and firing. Hand-written SVG: no chart library, nothing to download.
 */
import { ApiError, api, type Occurrence, type Series, type TicketDetail } from '../api.js';
import { useI18n } from '../i18n/index.js';
import { useLoad } from './common.js';

export interface ChartInputs {
  metric: string;
  threshold: number | null;
  /** When the condition started to hold (first evidence sample); null when unknown. */
  pendingStart: number | null;
  firingStart: number;
  /** Device time the rule resolved; null while it still fires. */
  firingEnd: number | null;
  evidence: Array<[number, number]>;
}

export type Point = [number, number];

export interface ChartData {
  points: Point[];
  source: 'influx' | 'evidence' | 'evidence-fallback';
  step?: string;
}

/** What to draw, from the ticket alone; null when the rule reads no numeric metric. */
export function chartInputs(detail: TicketDetail): ChartInputs | null {
  const occ = detail.occurrenceList;
  const fired: Occurrence | undefined =
    [...occ].reverse().find((o) => o.kind === 'fired') ?? occ[occ.length - 1];
  if (!fired) return null;
  const numericIn = (o: Occurrence) =>
    o.evidence.samples.flatMap((s) => Object.entries(s.metrics).filter(([, v]) => typeof v === 'number'));
  const metric = fired.metric ?? numericIn(fired)[0]?.[0] ?? null;
  if (!metric) return null;
  const seen = new Map<number, number>();
  for (const o of occ) {
    for (const s of o.evidence.samples) {
      const v = s.metrics[metric];
      if (typeof v === 'number') seen.set(s.ts, v);
    }
  }
  const evidence = [...seen].sort((a, b) => a[0] - b[0]);
  const firingStart = Date.parse(fired.deviceTime);
  const firstOwn = fired.evidence.samples.reduce((m, s) => Math.min(m, s.ts), Number.POSITIVE_INFINITY);
  const resolved = detail.timeline.find(
    (e) =>
      e.kind === 'rule.resolved' && e.data.incidentId === fired.incidentId && e.data.ignored === undefined,
  );
  const resolvedAt =
    typeof resolved?.data.resolvedAt === 'string' ? Date.parse(resolved.data.resolvedAt) : null;
  return {
    metric,
    threshold: typeof fired.threshold === 'number' ? fired.threshold : null,
    pendingStart: firstOwn < firingStart ? firstOwn : null,
    firingStart,
    firingEnd: resolvedAt,
    evidence,
  };
}

/** InfluxDB history around the anomaly when the bridge has it; otherwise the ticket's own samples. */
export async function loadChartData(deviceId: string, inputs: ChartInputs, now: number): Promise<ChartData> {
  const start = inputs.pendingStart ?? inputs.evidence[0]?.[0] ?? inputs.firingStart;
  const end = inputs.firingEnd ?? Math.max(inputs.firingStart, inputs.evidence.at(-1)?.[0] ?? 0, now);
  const pad = Math.max(2 * 60_000, (end - start) / 2);
  const from = new Date(start - pad).toISOString();
  const to = new Date(Math.min(now, end + pad)).toISOString();
  try {
    const q = new URLSearchParams({ metrics: inputs.metric, from, to });
    const s = await api<Series>(`/api/v1/devices/${encodeURIComponent(deviceId)}/series?${q}`);
    // A point is the mean of its step: drawn at the step's middle, not its start.
    const points = (s.series.find((x) => x.metric === inputs.metric)?.points ?? [])
      .filter((p): p is Point => typeof p[1] === 'number')
      .map(([ts, v]): Point => [ts + s.stepMs / 2, v]);
    if (points.length > 0) return { points, source: 'influx', step: s.step };
    return { points: inputs.evidence, source: 'evidence-fallback' };
  } catch (err) {
    if (err instanceof ApiError && err.code === 'FL_FEATURE_DISABLED')
      return { points: inputs.evidence, source: 'evidence' };
    return { points: inputs.evidence, source: 'evidence-fallback' };
  }
}

const W = 880;
const H = 300;
const M = { left: 56, right: 20, top: 22, bottom: 34 };

/** 1, 2 or 5 times a power of ten, giving about `count` ticks over the range. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toFixed(10)));
  return out;
}

const TIME_STEPS = [
  1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
].map((s) => s * 1000);

function timeTicks(lo: number, hi: number, count = 6): number[] {
  const raw = (hi - lo) / count;
  const step = TIME_STEPS.find((s) => s >= raw) ?? Math.ceil(raw / 86_400_000) * 86_400_000;
  const out: number[] = [];
  // Whole minutes and hours in local time read better than UTC-aligned ones.
  const offset = new Date(lo).getTimezoneOffset() * 60_000;
  for (let v = Math.ceil((lo - offset) / step) * step + offset; v <= hi; v += step) out.push(v);
  return out;
}

export function EvidenceChart(props: { detail: TicketDetail; inputs: ChartInputs }) {
  const i18n = useI18n();
  const { t, number } = i18n;
  const { detail, inputs } = props;
  const key = `${detail.id}:${detail.occurrences}:${inputs.firingEnd ?? ''}`;
  const loaded = useLoad<ChartData>(key, () => loadChartData(detail.device.id, inputs, Date.now()));
  const data = loaded.data;
  if (!data) return <p class="loading">{t('common.loading')}</p>;
  const points = data.points;
  if (points.length === 0) return <p class="muted">{t('chart.noData')}</p>;

  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const spanStart = inputs.pendingStart ?? inputs.firingStart;
  let x0 = Math.min(xs[0]!, spanStart);
  let x1 = Math.max(xs.at(-1)!, inputs.firingEnd ?? inputs.firingStart);
  if (x1 - x0 < 1000) {
    x0 -= 30_000;
    x1 += 30_000;
  }
  // Still firing, and nothing known after the last sample: leave room so the firing span shows.
  if (inputs.firingEnd === null && data.source !== 'influx') x1 += Math.max(5_000, (x1 - x0) * 0.25);
  const edge = (x1 - x0) * 0.03;
  x0 -= edge;
  x1 += edge;
  const all = inputs.threshold === null ? ys : [...ys, inputs.threshold];
  let y0 = Math.min(...all);
  let y1 = Math.max(...all);
  const pad = (y1 - y0) * 0.12 || Math.abs(y1) * 0.05 || 1;
  y0 -= pad;
  y1 += pad;
  const yTicks = niceTicks(y0, y1);
  y0 = Math.min(y0, yTicks[0]!);
  y1 = Math.max(y1, yTicks.at(-1)!);

  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (x: number) => M.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => M.top + (1 - (y - y0) / (y1 - y0)) * ph;
  const clampX = (x: number) => Math.max(M.left, Math.min(M.left + pw, sx(x)));

  const line = points
    .map((p, i) => `${i === 0 ? 'M' : 'L'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`)
    .join('');
  const pendingX =
    inputs.pendingStart === null ? null : [clampX(inputs.pendingStart), clampX(inputs.firingStart)];
  const firingX = [
    clampX(inputs.firingStart),
    inputs.firingEnd === null ? M.left + pw : clampX(inputs.firingEnd),
  ];
  const digits = y1 - y0 < 10 ? 1 : 0;
  const fmtX = x1 - x0 > 36 * 3_600_000 ? i18n.dateTime : i18n.time;
  const sourceText =
    data.source === 'influx'
      ? t('chart.sourceInflux', { step: data.step ?? '' })
      : data.source === 'evidence'
        ? t('chart.sourceEvidence')
        : t('chart.sourceEvidenceFallback');

  return (
    <figure class="chart" data-testid="evidence-chart" data-source={data.source} data-points={points.length}>
      <svg
        viewBox={`0 0 ${W} ${H}`}
        role="img"
        aria-label={t('chart.aria', {
          metric: inputs.metric,
          from: i18n.time(x0),
          to: i18n.time(x1),
          threshold: inputs.threshold ?? t('common.none'),
        })}
      >
        <rect x={M.left} y={M.top} width={pw} height={ph} class="plot-bg" />
        {yTicks.map((v) => (
          <g key={`y${v}`}>
            <line x1={M.left} x2={M.left + pw} y1={sy(v)} y2={sy(v)} class="grid-line" />
            <text x={M.left - 8} y={sy(v) + 4} class="tick" text-anchor="end">
              {number(v, digits)}
            </text>
          </g>
        ))}
        {timeTicks(x0, x1).map((v) => (
          <g key={`x${v}`}>
            <line x1={sx(v)} x2={sx(v)} y1={M.top + ph} y2={M.top + ph + 5} class="axis" />
            <text x={sx(v)} y={H - 10} class="tick" text-anchor="middle">
              {fmtX(v)}
            </text>
          </g>
        ))}
        {pendingX && pendingX[1]! > pendingX[0]! && (
          <g data-testid="span-pending">
            <rect
              x={pendingX[0]}
              y={M.top}
              width={pendingX[1]! - pendingX[0]!}
              height={ph}
              class="span-pending"
            />
            <text x={pendingX[0]! + 4} y={M.top + 14} class="span-label">
              {t('chart.pending')}
            </text>
          </g>
        )}
        <g data-testid="span-firing">
          <rect
            x={firingX[0]}
            y={M.top}
            width={Math.max(1, firingX[1]! - firingX[0]!)}
            height={ph}
            class="span-firing"
          />
          <text x={firingX[0]! + 4} y={M.top + 14} class="span-label span-label-firing">
            {t('chart.firing')}
          </text>
        </g>
        {inputs.threshold !== null && (
          <g data-testid="threshold">
            <line
              x1={M.left}
              x2={M.left + pw}
              y1={sy(inputs.threshold)}
              y2={sy(inputs.threshold)}
              class="threshold"
            />
            <text x={M.left + pw - 4} y={sy(inputs.threshold) - 6} class="threshold-label" text-anchor="end">
              {t('chart.threshold', { value: number(inputs.threshold, 2) })}
            </text>
          </g>
        )}
        <path d={line} class="series" data-testid="series" />
        {points.length <= 150 &&
          points.map((p) => <circle key={p[0]} cx={sx(p[0])} cy={sy(p[1])} r={2.6} class="series-dot" />)}
        <line x1={M.left} x2={M.left} y1={M.top} y2={M.top + ph} class="axis" />
        <line x1={M.left} x2={M.left + pw} y1={M.top + ph} y2={M.top + ph} class="axis" />
      </svg>
      <figcaption>
        <span class="key key-series">{inputs.metric}</span>
        {inputs.threshold !== null && (
          <span class="key key-threshold">
            {t('chart.threshold', { value: number(inputs.threshold, 2) })}
          </span>
        )}
        {pendingX && <span class="key key-pending">{t('chart.pending')}</span>}
        <span class="key key-firing">{t('chart.firing')}</span>
        <span class="muted source" data-testid="chart-source">
          {sourceText}
        </span>
      </figcaption>
    </figure>
  );
}
