/**
 * One EventSource for the whole page on /api/v1/tickets/stream. EventSource
 * cannot send headers, so the token goes in ?token= (the bridge moves it out of
 * the URL before logging). It reconnects by itself and resumes by Last-Event-ID.
 */
import { useEffect, useState } from 'preact/hooks';
import { EVENT_KINDS } from './model.js';

export interface LiveEvent {
  kind: string;
  ticketId: string | null;
}

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'off';

type Listener = (e: LiveEvent) => void;

const KINDS = [...EVENT_KINDS, 'incident.opened', 'incident.updated', 'incident.closed'];

let source: EventSource | null = null;
let state: LiveState = 'off';
const listeners = new Set<Listener>();
const stateListeners = new Set<(s: LiveState) => void>();

function setState(s: LiveState): void {
  state = s;
  for (const fn of stateListeners) fn(s);
}

export function connectLive(token: string): void {
  disconnectLive();
  const es = new EventSource(`/api/v1/tickets/stream?token=${encodeURIComponent(token)}`);
  source = es;
  setState('connecting');
  es.onopen = () => setState('live');
  es.onerror = () => setState(es.readyState === EventSource.CLOSED ? 'off' : 'reconnecting');
  const dispatch = (kind: string) => (msg: MessageEvent<string>) => {
    let ticketId: string | null = null;
    try {
      const data = JSON.parse(msg.data) as { ticket?: { id?: string } };
      ticketId = data.ticket?.id ?? null;
    } catch {
      // a frame we cannot read still says something changed
    }
    for (const fn of listeners) fn({ kind, ticketId });
  };
  for (const kind of KINDS) es.addEventListener(kind, dispatch(kind) as EventListener);
}

export function disconnectLive(): void {
  source?.close();
  source = null;
  setState('off');
}

export function useLive(fn: Listener): void {
  useEffect(() => {
    listeners.add(fn);
    return () => {
      listeners.delete(fn);
    };
  }, [fn]);
}

export function useLiveState(): LiveState {
  const [s, set] = useState(state);
  useEffect(() => {
    stateListeners.add(set);
    set(state);
    return () => {
      stateListeners.delete(set);
    };
  }, []);
  return s;
}
