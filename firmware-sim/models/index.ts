import { AC_9000, AC_12000 } from './ac.js';
import { RV_200 } from './rv.js';
import type { DeviceModel } from './types.js';

export type { DeviceModel, Effects, Family, Metrics } from './types.js';

// The models erase their state type here: the device loop only hands a model back its own state.
export const MODELS: ReadonlyMap<string, DeviceModel> = new Map(
  [AC_9000, AC_12000, RV_200].map((m) => [m.id, m as unknown as DeviceModel]),
);

export function getModel(id: string): DeviceModel {
  const model = MODELS.get(id);
  if (!model) throw new Error(`unknown model "${id}"; known models: ${[...MODELS.keys()].join(', ')}`);
  return model;
}

/** Model id as a device id fragment: AC-9000 -> ac9000. */
export function modelSlug(id: string): string {
  return id.toLowerCase().replace(/[^a-z0-9]/g, '');
}
