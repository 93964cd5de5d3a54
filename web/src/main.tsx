import { render } from 'preact';
import { App } from './App.js';
import { storedToken } from './api.js';
import { queueUrl } from './pages/Queue.js';
import { prefetch } from './prefetch.js';
import { interceptLinks, parse } from './router.js';
import './styles.css';

const first = parse(location);
if (storedToken() && first.page === 'queue') prefetch(queueUrl(first.params));

const root = document.getElementById('app')!;
interceptLinks(root);
render(<App />, root);
