/** Who is signed in, shared by the pages that show or hide controls by role. */
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Me } from './api.js';

export const SessionContext = createContext<Me>({ name: '', role: 'staff' });
export const useSession = (): Me => useContext(SessionContext);
