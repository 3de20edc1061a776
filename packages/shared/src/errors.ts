/**
 * Stable error codes, one registry for the whole project (as fastify's FST_ERR_*).
 * Codes travel on the bus inside error replies, so they never change meaning.
 */
export const ErrorCode = {
  BAD_PAYLOAD: 'VMSIM_ERR_BAD_PAYLOAD',
  SCHEMA: 'VMSIM_ERR_SCHEMA',
  BAD_SUBJECT_TOKEN: 'VMSIM_ERR_BAD_SUBJECT_TOKEN',
  CONFIG: 'VMSIM_ERR_CONFIG',
  NO_SUCH_VM: 'VMSIM_ERR_NO_SUCH_VM',
  VM_EXISTS: 'VMSIM_ERR_VM_EXISTS',
  BAD_STATE: 'VMSIM_ERR_BAD_STATE',
  NO_MEMORY: 'VMSIM_ERR_NO_MEMORY',
  NO_SPACE: 'VMSIM_ERR_NO_SPACE',
  OUT_OF_RANGE: 'VMSIM_ERR_OUT_OF_RANGE',
  DEVICE_BUSY: 'VMSIM_ERR_DEVICE_BUSY',
  NO_SUCH_DEVICE: 'VMSIM_ERR_NO_SUCH_DEVICE',
  VM_NOT_RUNNING: 'VMSIM_ERR_VM_NOT_RUNNING',
  VM_CRASHED: 'VMSIM_ERR_VM_CRASHED',
  TIMEOUT: 'VMSIM_ERR_TIMEOUT',
  OVERLOAD: 'VMSIM_ERR_OVERLOAD',
  NOT_FOUND: 'VMSIM_ERR_NOT_FOUND',
  IO: 'VMSIM_ERR_IO',
  HOST_UNAVAILABLE: 'VMSIM_ERR_HOST_UNAVAILABLE',
  INTERNAL: 'VMSIM_ERR_INTERNAL',
  // A guest touched more memory than its limit and was OOM-killed.
  OOM: 'VMSIM_ERR_OOM',
  UNSUPPORTED: 'VMSIM_ERR_UNSUPPORTED',
  // The host cannot keep a CPU reservation: the running VMs' reservations would exceed its cores.
  NO_CPU: 'VMSIM_ERR_NO_CPU',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class VmsimError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'VmsimError';
    this.code = code;
    this.details = details;
  }
}

export function isVmsimError(e: unknown): e is VmsimError {
  return e instanceof VmsimError;
}

/** Any thrown value as a VmsimError, keeping the code when it already has one. */
export function toVmsimError(e: unknown): VmsimError {
  if (e instanceof VmsimError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new VmsimError(ErrorCode.INTERNAL, message);
}
