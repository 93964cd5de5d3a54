/** The HTTP transport of the outbox: a signed JSON POST per delivery. */
import type { SendJob, SendResult, Transport } from './outbox.js';
import { SIGNATURE_HEADER, sign } from './signature.js';

export interface WebhookReceiver {
  name: string;
  url: string;
  secret: string;
  timeoutMs: number;
}

export const USER_AGENT = 'faultline-webhooks/1';

export function webhookTransport(receiver: WebhookReceiver, now: () => number = Date.now): Transport {
  return async (job: SendJob): Promise<SendResult> => {
    const t = Math.floor(now() / 1000);
    let res: Response;
    try {
      res = await fetch(receiver.url, {
        method: 'POST',
        body: job.payload,
        // A redirect would send the signed body somewhere the operator did not configure.
        redirect: 'manual',
        signal: AbortSignal.timeout(receiver.timeoutMs),
        headers: {
          'content-type': 'application/json',
          'user-agent': USER_AGENT,
          [SIGNATURE_HEADER]: sign(receiver.secret, job.payload, t),
          'idempotency-key': job.key,
          'x-faultline-event': job.kind,
          'x-faultline-delivery': job.deliveryId,
          'x-faultline-attempt': String(job.attempt),
        },
      });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const detail = e.name === 'TimeoutError' ? `timed out after ${receiver.timeoutMs} ms` : e.message;
      return { ok: false, error: e.cause?.code ? `${detail} (${e.cause.code})` : detail };
    }
    // Read the body so the connection can be reused; keep a little of it for the delivery log.
    const text = await res.text().catch(() => '');
    if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status };
    return {
      ok: false,
      status: res.status,
      error: `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`,
    };
  };
}
