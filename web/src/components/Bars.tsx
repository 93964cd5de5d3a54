/** Small charts for the fleet page: horizontal bars for counts, stacked columns for a trend. */
import { useI18n } from '../i18n/index.js';

export const PALETTE = ['#1c7ed6', '#e8590c', '#2f9e44', '#ae3ec9', '#f08c00', '#0c8599', '#868e96'];

export function BarList(props: { counts: Record<string, number>; testid?: string; max?: number }) {
  const { number, t } = useI18n();
  const rows = Object.entries(props.counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const shown = rows.slice(0, props.max ?? 8);
  const top = Math.max(1, ...rows.map((r) => r[1]));
  if (rows.length === 0) return <p class="muted">{t('common.none')}</p>;
  return (
    <ul class="bars" data-testid={props.testid}>
      {shown.map(([k, v]) => (
        <li key={k}>
          <span class="bar-label" title={k}>
            {k}
          </span>
          <span class="bar-track">
            <span class="bar-fill" style={{ width: `${(v / top) * 100}%` }} />
          </span>
          <span class="bar-value">{number(v)}</span>
        </li>
      ))}
    </ul>
  );
}

/** Keeps the biggest series and folds the rest into one, so six colours suffice. */
export function topSeries(
  series: Record<string, number[]>,
  keep: number,
  otherLabel: string,
): Array<[string, number[]]> {
  const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const sorted = Object.entries(series).sort((a, b) => total(b[1]) - total(a[1]) || a[0].localeCompare(b[0]));
  if (sorted.length <= keep + 1) return sorted;
  const rest = sorted.slice(keep);
  const other = rest[0]![1].map((_, i) => rest.reduce((n, [, xs]) => n + (xs[i] ?? 0), 0));
  return [...sorted.slice(0, keep), [otherLabel, other]];
}

const W = 560;
const H = 200;
const M = { left: 34, right: 8, top: 10, bottom: 26 };

export function StackedColumns(props: {
  buckets: number[];
  bucketMs: number;
  series: Array<[string, number[]]>;
  /** What the chart shows, for screen readers. */
  label: string;
  testid?: string;
}) {
  const i18n = useI18n();
  const n = props.buckets.length;
  const totals = props.buckets.map((_, i) => props.series.reduce((s, [, xs]) => s + (xs[i] ?? 0), 0));
  const top = Math.max(1, ...totals);
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const bw = pw / Math.max(1, n);
  const y = (v: number) => M.top + ph - (v / top) * ph;
  const every = Math.max(1, Math.ceil(n / 7));
  const label = (at: number) =>
    props.bucketMs >= 86_400_000
      ? new Intl.DateTimeFormat(i18n.tag, { month: 'numeric', day: 'numeric' }).format(at)
      : new Intl.DateTimeFormat(i18n.tag, { hour: '2-digit', minute: '2-digit' }).format(at);
  return (
    <figure class="columns-chart" data-testid={props.testid}>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={props.label}>
        {(top <= 4 ? Array.from({ length: top + 1 }, (_, i) => i) : [0, Math.round(top / 2), top]).map(
          (v) => (
            <g key={v}>
              <line x1={M.left} x2={M.left + pw} y1={y(v)} y2={y(v)} class="grid-line" />
              <text x={M.left - 6} y={y(v) + 4} class="tick" text-anchor="end">
                {i18n.number(v)}
              </text>
            </g>
          ),
        )}
        {props.buckets.map((at, i) => {
          let acc = 0;
          return (
            <g key={at}>
              {props.series.map(([name, xs], s) => {
                const v = xs[i] ?? 0;
                if (v === 0) return null;
                const y0 = y(acc);
                acc += v;
                return (
                  <rect
                    key={name}
                    x={M.left + i * bw + bw * 0.12}
                    width={bw * 0.76}
                    y={y(acc)}
                    height={Math.max(0.5, y0 - y(acc))}
                    fill={PALETTE[s % PALETTE.length]}
                  >
                    <title>{`${label(at)} · ${name}: ${v}`}</title>
                  </rect>
                );
              })}
              {i % every === 0 && (
                <text x={M.left + i * bw + bw / 2} y={H - 8} class="tick" text-anchor="middle">
                  {label(at)}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <figcaption>
        {props.series.map(([name], s) => (
          <span key={name} class="key">
            <span class="swatch" style={{ background: PALETTE[s % PALETTE.length] }} />
            {name}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}
