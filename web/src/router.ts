/** Path routing under /desk with the History API; links are ordinary <a href> the app intercepts. */
import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { page: 'queue'; params: URLSearchParams }
  | { page: 'ticket'; id: string }
  | { page: 'fleet' }
  | { page: 'rules' }
  | { page: 'missing' };

export function parse(location: { pathname: string; search: string }): Route {
  const path = location.pathname.replace(/\/+$/, '') || '/';
  if (path === '/' || path === '/desk' || path === '/desk/queue') {
    return { page: 'queue', params: new URLSearchParams(location.search) };
  }
  const ticket = /^\/desk\/tickets\/(\d{1,19})$/.exec(path);
  if (ticket) return { page: 'ticket', id: ticket[1]! };
  if (path === '/desk/fleet') return { page: 'fleet' };
  if (path === '/desk/rules') return { page: 'rules' };
  return { page: 'missing' };
}

const CHANGE = 'faultline:navigate';

export function navigate(url: string, replace = false): void {
  if (url === `${location.pathname}${location.search}`) return;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  window.dispatchEvent(new Event(CHANGE));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location));
  useEffect(() => {
    const update = () => setRoute(parse(location));
    window.addEventListener('popstate', update);
    window.addEventListener(CHANGE, update);
    return () => {
      window.removeEventListener('popstate', update);
      window.removeEventListener(CHANGE, update);
    };
  }, []);
  return route;
}

/** Same-origin links navigate in place; modified clicks (new tab) keep the browser's behaviour. */
export function interceptLinks(root: HTMLElement): void {
  root.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = (e.target as Element | null)?.closest('a');
    if (!a || a.target || a.hasAttribute('download')) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith('/desk')) return;
    e.preventDefault();
    navigate(`${url.pathname}${url.search}`);
  });
}
