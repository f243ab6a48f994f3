// Entry point of the live dashboard served at `/dashboard`.
import './dashboard.css';

import { createRoot } from 'react-dom/client';

import { App } from './App';

const root = document.getElementById('app');
if (root) {
  root.textContent = '';
  createRoot(root).render(<App />);
}
