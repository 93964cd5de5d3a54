/**
 * Every error Faultline reports to a caller has a code from this catalogue.
 * The HTTP API maps them to one JSON shape: { error: { code, message, details? } }.
 * Add codes here, never ad hoc, so the API reference stays complete.
 */
export const ERROR_CATALOGUE = {
  FL_CONFIG_INVALID: { status: 500, message: 'Invalid configuration' },
  FL_DATA_DIR_LOCKED: { status: 500, message: 'Another Faultline process holds the data directory' },
  FL_DB_UNAVAILABLE: { status: 503, message: 'The database is unavailable' },
  FL_AUTH_MISSING: { status: 401, message: 'A bearer token is required' },
  FL_AUTH_INVALID: { status: 401, message: 'The bearer token is not valid' },
  FL_FORBIDDEN: { status: 403, message: 'Your role may not do this' },
  FL_VALIDATION: { status: 400, message: 'The request is not valid' },
  FL_NOT_FOUND: { status: 404, message: 'No such resource' },
  FL_DEVICE_NOT_FOUND: { status: 404, message: 'No such device' },
  FL_DEVICE_EXISTS: { status: 409, message: 'A device with this id already exists' },
  FL_IMPORT_INVALID: { status: 400, message: 'The import file has invalid rows' },
  FL_CONFLICT: { status: 409, message: 'The resource changed or conflicts' },
  FL_INVALID_TRANSITION: { status: 409, message: 'That status change is not allowed' },
  FL_NOT_READY: { status: 503, message: 'Faultline is not ready' },
  FL_FEATURE_DISABLED: { status: 503, message: 'This feature is not configured' },
  FL_INTERNAL: { status: 500, message: 'Internal error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export class FaultlineError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: unknown;

  constructor(code: ErrorCode, message?: string, details?: unknown) {
    super(message ?? ERROR_CATALOGUE[code].message);
    this.name = 'FaultlineError';
    this.code = code;
    this.status = ERROR_CATALOGUE[code].status;
    this.details = details;
  }

  toJSON(): { error: { code: ErrorCode; message: string; details?: unknown } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.details === undefined ? {} : { details: this.details }),
      },
    };
  }
}

export function isFaultlineError(err: unknown): err is FaultlineError {
  return err instanceof FaultlineError;
}
