/** VM states, as libvirt names its domain states. */
export const VM_STATES = [
  'defined',
  'starting',
  'running',
  'paused',
  'stopping',
  'stopped',
  'crashed',
  'failed',
] as const;
export type VmState = (typeof VM_STATES)[number];
